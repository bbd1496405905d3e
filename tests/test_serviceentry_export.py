"""ServiceEntries as written: an absent exportTo becomes ["."] with one warning (mutating
webhook), then the validating webhook admits it. Patches applied with jsonpatch."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from conftest import load_review

from webhook.admission.seam import Stage, admit
from webhook.config.policy import load_policy, parse_policy
from webhook.core.review import Request, review_from_document
from webhook.egress.registry import parse_registry
from webhook.policies.context import Context

RULE = "serviceentry.export-to"
REGISTRY = parse_registry("""
entries:
- host: api.frankfurter.app
  ports: [{number: 443, protocols: [TLS, HTTPS]}]
  namespaces: [agents]
""", source="test")
ENFORCE = Context(policy=load_policy(None), registry=REGISTRY)
MISSING = object()


def demo_entry(version: str, export: Any = MISSING, operation: str = "CREATE") -> Request:
    """The captured ServiceEntry (exportTo ".") with exportTo as the demo writes it."""
    document = copy.deepcopy(load_review(f"serviceentry-{version}.json"))
    request = document["request"]
    request["operation"] = operation
    spec = request["object"]["spec"]
    spec.pop("exportTo", None)
    if export is not MISSING:
        spec["exportTo"] = export
    return review_from_document(document)


def _patched(request: Request, context: Context) -> tuple[dict[str, Any], Any]:
    outcome = admit(request, stage=Stage.MUTATE, context=context)
    assert outcome.allowed
    obj = jsonpatch.apply_patch(request.object, list(outcome.patch))
    return obj, outcome


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
@pytest.mark.parametrize("export", [MISSING, None, []], ids=["absent", "null", "empty"])
def test_a_demo_entry_without_export_to_is_exported_to_its_namespace_and_admitted(
        version: str, export: Any) -> None:
    request = demo_entry(version, export)
    obj, outcome = _patched(request, ENFORCE)
    assert obj["spec"]["exportTo"] == ["."]
    assert len(outcome.warnings) == 1
    assert 'exportTo=["."]' in outcome.warnings[0]
    assert outcome.mutated == ("exportTo",)
    document = copy.deepcopy(load_review(f"serviceentry-{version}.json"))
    document["request"]["object"] = obj
    final = admit(review_from_document(document), stage=Stage.VALIDATE, context=ENFORCE)
    assert final.allowed, final.review


def test_without_the_mutation_the_same_entry_is_refused() -> None:
    outcome = admit(demo_entry("v1"), stage=Stage.VALIDATE, context=ENFORCE)
    assert not outcome.allowed
    assert outcome.rules == (RULE,)


@pytest.mark.parametrize("export", [["."], ["*"], ["other"]])
def test_an_export_to_that_is_set_is_never_touched(export: list[str]) -> None:
    outcome = admit(demo_entry("v1", export), stage=Stage.MUTATE, context=ENFORCE)
    assert outcome.allowed
    assert outcome.patch == ()
    assert outcome.warnings == ()


def test_an_update_that_drops_export_to_gets_it_back() -> None:
    obj, _ = _patched(demo_entry("v1", operation="UPDATE"), ENFORCE)
    assert obj["spec"]["exportTo"] == ["."]


def test_warn_mode_only_says_what_it_would_set_and_off_does_nothing() -> None:
    warn = Context(policy=parse_policy(f"rules: {{{RULE}: warn}}\n", source="t"),
                   registry=REGISTRY)
    outcome = admit(demo_entry("v1"), stage=Stage.MUTATE, context=warn)
    assert outcome.patch == ()
    assert outcome.warnings == (f'[{RULE}] would set spec.exportTo=["."] (unset, Istio exports '
                                "the entry to every namespace; now it applies to this "
                                "namespace only)",)
    off = Context(policy=parse_policy(f"rules: {{{RULE}: 'off'}}\n", source="t"),
                  registry=REGISTRY)
    outcome = admit(demo_entry("v1"), stage=Stage.MUTATE, context=off)
    assert (outcome.patch, outcome.warnings) == ((), ())


def test_a_warn_namespace_gets_no_patch() -> None:
    warn_context = Context(policy=load_policy(None).downgraded(), registry=REGISTRY)
    outcome = admit(demo_entry("v1"), stage=Stage.MUTATE, context=warn_context)
    assert outcome.patch == ()
    assert any("would set" in w for w in outcome.warnings)


def test_check_admits_the_demo_entry_and_shows_the_change(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    registry = tmp_path / "registry.yaml"
    registry.write_text("entries: [{host: api.frankfurter.app, ports: [{number: 443, "
                        "protocol: TLS}], namespaces: [agents]}]\n")
    manifest = tmp_path / "se.yaml"
    manifest.write_text("""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: frankfurter, namespace: agents}
spec:
  hosts: [api.frankfurter.app]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
""")
    result = subprocess.run([sys.executable, "-m", "webhook", "check", "-f", str(manifest),
                             "--registry", str(registry), "-o", "json"], capture_output=True,
                            text=True, cwd=root, timeout=60)
    (verdict,) = json.loads(result.stdout)["results"]
    assert verdict["verdict"] == "admitted", verdict
    assert "exportTo" in verdict["changes"]
    assert result.returncode == 0
