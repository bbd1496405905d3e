"""The policy file: strict loading, modes, digest, and that the docs keep up with the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.config.policy import Policy, load_policy, parse_policy
from webhook.core.errors import ConfigError
from webhook.core.rules import RULES, Mode

ROOT = Path(__file__).resolve().parent.parent


def test_the_embedded_default_loads_and_enforces_every_rule() -> None:
    policy = load_policy(None)
    assert policy.runtime_class.name == "kata"
    assert all(policy.mode(rule) is Mode.ENFORCE for rule in RULES)


@pytest.mark.parametrize(("text", "where"), [
    ("runtimeClass:\n  nmae: kata\n", "runtimeClass.nmae"),
    ("memroy: {}\n", "memroy"),
    ("rules:\n  pod.no-such-rule: warn\n", "unknown rule id"),
    ("rules:\n  pod.dns: sometimes\n", "rules.pod.dns"),
    ("dns:\n  nameservers: [resolver.example]\n", "not an IP address"),
    ("dns:\n  nameservers: [1.1.1.1, 1.0.0.1, 8.8.8.8, 8.8.4.4]\n", "dns.nameservers"),
    ("memory:\n  podFloor: two gigs\n", "memory.podFloor"),
    ("- a list\n", "must be a mapping"),
    ("key: [unclosed\n", "not valid YAML"),
])
def test_a_bad_policy_names_the_source_the_field_and_the_reason(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(text, source="policy.yaml")
    assert str(caught.value).startswith("policy.yaml: ")
    assert where in str(caught.value)


def test_an_unreadable_policy_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")


def test_an_unquoted_yaml_off_means_the_mode_off() -> None:
    policy = parse_policy("rules:\n  pod.dns: off\n", source="p")
    assert policy.mode("pod.dns") is Mode.OFF
    assert not policy.mutates("pod.dns")


def test_downgraded_turns_enforce_into_warn_and_keeps_off() -> None:
    policy = parse_policy("rules:\n  pod.sysctls: 'off'\n", source="p").downgraded()
    assert policy.mode("pod.runtime-class") is Mode.WARN
    assert policy.mode("pod.sysctls") is Mode.OFF
    assert not policy.mutates("pod.runtime-class")


def test_the_digest_is_deterministic_and_changes_with_the_policy() -> None:
    a = parse_policy("dns:\n  nameservers: ['10.0.0.53']\n", source="a")
    b = parse_policy("dns: {nameservers: ['10.0.0.53']}\n", source="b")
    c = parse_policy("dns:\n  nameservers: ['10.0.0.54']\n", source="c")
    assert a.digest == b.digest
    assert a.digest != c.digest
    assert a.digest.startswith("sha256:")


def _fields(model: type[Any], prefix: str = "") -> list[str]:
    names = []
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, Policy.__mro__[1]):
            names.extend(_fields(annotation, key + "."))
        else:
            names.append(key)
    return names


def test_readme_documents_every_policy_field_and_every_rule_id() -> None:
    readme = (ROOT / "README.md").read_text()
    missing_fields = [f for f in _fields(Policy) if f"`{f}`" not in readme]
    missing_rules = [r for r in RULES if f"`{r}`" not in readme]
    assert not missing_fields, missing_fields
    assert not missing_rules, missing_rules


def test_the_shipped_policy_configmap_matches_the_embedded_default() -> None:
    configmap = yaml.safe_load((ROOT / "manifests/base/configmap-policy.yaml").read_text())
    shipped = parse_policy(configmap["data"]["policy.yaml"], source="configmap")
    assert shipped.digest == load_policy(None).digest


@pytest.mark.parametrize(("text", "suggestion"), [
    ("runtimeClass:\n  nmae: kata\n", "runtimeClass.nmae: Extra inputs are not permitted "
     "(did you mean 'names'?)"),
    ("runtimeclass: {name: kata}\n", "(did you mean 'runtimeClass'?)"),
    ("dns:\n  nameserver: [10.0.0.53]\n", "dns.nameserver: Extra inputs are not permitted "
     "(did you mean 'nameservers'?)"),
    ("istio:\n  proxyUid: 1337\n", "(did you mean 'proxyUID'?)"),
])
def test_an_unknown_policy_field_names_the_nearest_known_one(text: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(text, source="policy.yaml")
    assert suggestion in str(caught.value)


def test_an_unknown_field_far_from_every_known_one_gets_no_guess() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy("colour: blue\n", source="policy.yaml")
    assert "colour: Extra inputs are not permitted" in str(caught.value)
    assert "did you mean" not in str(caught.value)


def test_the_docs_give_every_rule_id_a_row_with_its_fix() -> None:
    # README's table says what each rule guarantees; a docs/ table row says how to fix it.
    docs = "".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))
    missing = [r for r in RULES if f"| `{r}` |" not in docs]
    assert not missing, missing
