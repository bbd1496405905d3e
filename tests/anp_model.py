"""A faithful pydantic model of AdminNetworkPolicy (policy.networking.k8s.io/v1alpha1).

Transcribed from the CRD that kubernetes-sigs/network-policy-api publishes
(config/crd/standard/policy.networking.k8s.io_adminnetworkpolicies.yaml, bundle v0.1.7,
standard channel): the fields, enums, bounds, list sizes and "exactly one of" constraints of
the egress side, the subject and the priority. Unknown fields are errors, as they are for a
structural CRD schema with pruning when ``kubectl apply --validate=strict`` is used. The CEL
``isCIDR`` rule is checked with ``ipaddress``. Ingress rules are not modelled: rendering
writes none, so an ``ingress`` key is refused.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Requirement(_Strict):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None

    @model_validator(mode="after")
    def _values(self) -> Requirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError("In and NotIn need values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError("Exists and DoesNotExist take no values")
        return self


class LabelSelector(_Strict):
    matchLabels: dict[str, str] | None = None
    matchExpressions: list[Requirement] | None = None


class PodsPeer(_Strict):
    namespaceSelector: LabelSelector
    podSelector: LabelSelector


class _ExactlyOne(_Strict):
    @model_validator(mode="after")
    def _one(self) -> _ExactlyOne:
        if len(self.model_fields_set) != 1:
            raise ValueError("exactly one field must be set")
        return self


class Subject(_ExactlyOne):
    namespaces: LabelSelector | None = None
    pods: PodsPeer | None = None


class EgressPeer(_ExactlyOne):
    namespaces: LabelSelector | None = None
    pods: PodsPeer | None = None
    nodes: LabelSelector | None = None
    networks: list[str] | None = Field(None, min_length=1, max_length=25)

    @field_validator("networks")
    @classmethod
    def _cidrs(cls, value: list[str] | None) -> list[str] | None:
        for cidr in value or ():
            if len(cidr) > 43:
                raise ValueError("CIDR longer than 43 characters")
            ipaddress.ip_network(cidr)  # isCIDR(self)
        if value is not None and len(set(value)) != len(value):
            raise ValueError("networks is a set")
        return value


Protocol = Literal["TCP", "UDP", "SCTP"]


class PortNumber(_Strict):
    protocol: Protocol = "TCP"
    port: int = Field(ge=1, le=65535)


class PortRange(_Strict):
    protocol: Protocol = "TCP"
    start: int = Field(ge=1, le=65535)
    end: int = Field(ge=1, le=65535)

    @model_validator(mode="after")
    def _ordered(self) -> PortRange:
        if self.start >= self.end:
            raise ValueError("start must be less than end")
        return self


class Port(_ExactlyOne):
    portNumber: PortNumber | None = None
    portRange: PortRange | None = None


class EgressRule(_Strict):
    name: str | None = Field(None, max_length=100)
    action: Literal["Allow", "Deny", "Pass"]
    to: list[EgressPeer] = Field(min_length=1, max_length=100)
    ports: list[Port] | None = Field(None, min_length=1, max_length=100)


class Spec(_Strict):
    priority: int = Field(ge=0, le=1000)
    subject: Subject
    egress: list[EgressRule] | None = Field(None, max_length=100)


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=253)


class AdminNetworkPolicy(_Strict):
    apiVersion: Literal["policy.networking.k8s.io/v1alpha1"]
    kind: Literal["AdminNetworkPolicy"]
    metadata: Metadata
    spec: Spec
