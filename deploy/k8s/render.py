#!/usr/bin/env python3
"""Renders a kustomization of deploy/k8s when no kustomize is at hand.

Supports exactly what deploy/k8s uses: `resources` (files or kustomization folders),
`namespace`, and `patches` given by `path` (strategic merge: maps merge, lists of maps
merge by `name`, other lists are replaced; `$patch: delete` removes the object). deploy/validate.sh checks that its output
equals `kubectl kustomize` wherever kubectl exists.

usage: render.py DIR                 print the rendered manifests
       render.py --compare FILE DIR  exit 1 unless FILE holds the same objects
"""
import copy
import os
import sys

import yaml

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


def key(obj):
    m = obj["metadata"]
    return (obj["kind"], m.get("namespace", ""), m["name"])


def merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if (isinstance(base, list) and isinstance(patch, list) and patch
            and all(isinstance(x, dict) and "name" in x for x in base + patch)):
        out = [copy.deepcopy(x) for x in base]
        for p in patch:
            i = next((i for i, x in enumerate(out) if x["name"] == p["name"]), None)
            if i is None:
                out.append(copy.deepcopy(p))
            else:
                out[i] = merge(out[i], p)
        return out
    return copy.deepcopy(patch)


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def render(folder):
    with open(os.path.join(folder, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    objs = []
    for r in k.get("resources", []):
        p = os.path.join(folder, r)
        objs += render(p) if os.path.isdir(p) else load_docs(p)
    ns = k.get("namespace")
    if ns:
        for o in objs:
            if o["kind"] not in CLUSTER_SCOPED:
                o.setdefault("metadata", {})["namespace"] = ns
    for patch in k.get("patches", []):
        for p in load_docs(os.path.join(folder, patch["path"])):
            hits = [i for i, o in enumerate(objs) if key(o) == key(p)]
            if len(hits) != 1:
                raise SystemExit(f"patch {patch['path']}: {key(p)} matches {len(hits)} objects")
            if p.get("$patch") == "delete":
                del objs[hits[0]]
            else:
                objs[hits[0]] = merge(objs[hits[0]], p)
    unknown = set(k) - {"apiVersion", "kind", "resources", "namespace", "patches"}
    if unknown:
        raise SystemExit(f"{folder}: unsupported kustomization fields {sorted(unknown)}")
    return objs


def main(argv):
    if len(argv) == 4 and argv[1] == "--compare":
        with open(argv[2]) as f:
            want = {key(o): o for o in yaml.safe_load_all(f) if o}
        got = {key(o): o for o in render(argv[3])}
        if want != got:
            for k in sorted(set(want) | set(got)):
                if want.get(k) != got.get(k):
                    print(f"render.py differs from kustomize on {k}", file=sys.stderr)
            return 1
        return 0
    if len(argv) == 2:
        yaml.safe_dump_all(render(argv[1]), sys.stdout, sort_keys=False)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
