#!/usr/bin/env python3
"""Validates every manifest in deploy/spinkube without a cluster.

- SpinApp: against the Spin Operator's CRD schema (crds/), strictly: a field
  the schema does not define is an error, as kubectl's strict field
  validation makes it (Kubernetes would otherwise drop it silently).
- Every other kind: with kubernetes-validate (PyPI), which carries the
  schemas of Kubernetes' built-in kinds, also strictly.

It first checks that it can fail: a SpinApp without `image`, one with a
misspelt field and a StatefulSet without `selector` must each be refused.

    python3 deploy/spinkube/validate.py   # .ci/run installs jsonschema, pyyaml, kubernetes-validate
"""
import copy
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).parent
KUBERNETES_VERSION = "1.32"


def strict(schema):
    """The schema with additionalProperties: false wherever it lists properties
    and does not keep unknown fields itself."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def spinapp_validator():
    crd = yaml.safe_load((HERE / "crds" / "core.spinkube.dev_spinapps.yaml").read_text())
    group = crd["spec"]["group"]
    versions = {}
    for version in crd["spec"]["versions"]:
        schema = strict(version["schema"]["openAPIV3Schema"])
        # metadata is Kubernetes' ObjectMeta, which the CRD leaves open.
        schema["properties"]["metadata"] = {"type": "object"}
        versions[f"{group}/{version['name']}"] = jsonschema.Draft7Validator(schema)
    return versions


def errors(doc, spinapps):
    kind, api = doc.get("kind"), doc.get("apiVersion")
    if not doc.get("metadata", {}).get("name"):
        return ["metadata.name is missing"]
    if kind == "SpinApp":
        validator = spinapps.get(api)
        if validator is None:
            return [f"apiVersion {api} is not one the CRD serves ({', '.join(spinapps)})"]
        return [
            f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(doc)
        ]
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(map(str, e.path)) or "(root)"
        return [f"{path}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"no schema for {kind} {api}: {e}"]
    return []


def main():
    spinapps = spinapp_validator()
    manifests = sorted(p for p in HERE.glob("*.yaml"))
    docs = [(p, d) for p in manifests for d in yaml.safe_load_all(p.read_text()) if d]

    # The check must be able to fail.
    app = next(d for _, d in docs if d["kind"] == "SpinApp")
    no_image = copy.deepcopy(app)
    del no_image["spec"]["image"]
    misspelt = copy.deepcopy(app)
    misspelt["spec"]["replica"] = 2
    statefulset = copy.deepcopy(next(d for _, d in docs if d["kind"] == "StatefulSet"))
    del statefulset["spec"]["selector"]
    for name, broken in [("no image", no_image), ("misspelt field", misspelt), ("no selector", statefulset)]:
        if not errors(broken, spinapps):
            sys.exit(f"validate.py: a manifest with {name} passed; the check is broken")

    failed = False
    kinds = {}
    for path, doc in docs:
        found = errors(doc, spinapps)
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
        for e in found:
            failed = True
            print(f"{path.name}: {doc['kind']} {doc['metadata'].get('name')}: {e}", file=sys.stderr)
    if failed:
        sys.exit(1)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(f"deploy/spinkube: {len(docs)} manifests valid ({summary}); SpinApp against the operator's CRD, the rest against Kubernetes {KUBERNETES_VERSION}")


if __name__ == "__main__":
    main()
