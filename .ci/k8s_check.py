"""Offline checks of the Kubernetes manifests in deploy/kubernetes (run by .ci/k8s.sh).

1. Schema: every resource against the strict JSON schemas that kubernetes-validate ships for each
   Kubernetes version given (unknown fields, wrong types, missing required fields fail). Unlike
   the kubernetes-validate command, an unknown kind or apiVersion (a schema that does not exist)
   fails too instead of being a warning.
2. The kustomization lists exactly the manifests in the directory.
3. What the API server would accept but would not work: selectors that match no pod template,
   probes and Services on ports the container does not name, an HPA or volume naming nothing,
   a termination grace period shorter than the preStop sleep plus the server's drain bound.

Usage: k8s_check.py DIR --k8s-version 1.30.0 [--k8s-version ...] [--rendered FILE]
"""

import argparse
import os
import sys

import yaml
import kubernetes_validate.utils as kv
from kubernetes_validate.version import __version__ as KV_VERSION

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
DEFAULT_SHUTDOWN_SECS = 10  # --shutdown-timeout-secs default in src/server.rs


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def name_of(doc):
    return "%s/%s" % (doc.get("kind", "?"), (doc.get("metadata") or {}).get("name", "?"))


def schema_errors(where, doc, versions):
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        return ["%s: a document without apiVersion and kind" % where]
    out = []
    for version in versions:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(top level)"
            out.append("%s: %s against Kubernetes %s: %s: %s"
                       % (where, name_of(doc), version, path, e.message))
        except kv.SchemaNotFoundError as e:
            out.append("%s: %s: %s" % (where, name_of(doc), e.message))
        except kv.VersionNotSupportedError:
            sys.exit("kubernetes-validate %s has no schemas for Kubernetes %s" % (KV_VERSION, version))
    return out


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_ports(pod_spec):
    return {p.get("name"): p.get("containerPort")
            for c in pod_spec.get("containers", []) for p in c.get("ports", [])}


def consistency_errors(docs):
    """docs: [(where, doc)] of one complete set of resources."""
    out = []
    by_kind = {}
    for where, d in docs:
        by_kind.setdefault(d.get("kind"), []).append((where, d))
    workloads = [(w, d) for k in WORKLOADS for w, d in by_kind.get(k, [])]
    pvcs = {d["metadata"]["name"] for _, d in by_kind.get("PersistentVolumeClaim", [])}

    def template_labels(d):
        return ((d["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}

    for where, d in workloads:
        spec = d["spec"]
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        if not matches(selector, template_labels(d)):
            out.append("%s: %s: spec.selector does not match the pod template's labels" % (where, name_of(d)))
        pod = spec["template"]["spec"]
        ports = container_ports(pod)
        for v in pod.get("volumes", []):
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and claim not in pvcs:
                out.append("%s: %s: volume %s names PersistentVolumeClaim %s, which is not defined"
                           % (where, name_of(d), v.get("name"), claim))
        grace = pod.get("terminationGracePeriodSeconds", 30)
        for c in pod.get("containers", []):
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    out.append("%s: %s: %s uses port %r, which no container port is named"
                               % (where, name_of(d), probe, port))
            if "livenessProbe" not in c or "readinessProbe" not in c:
                out.append("%s: %s: container %s needs a liveness and a readiness probe"
                           % (where, name_of(d), c.get("name")))
            env = {e.get("name"): e.get("value") for e in c.get("env", [])}
            drain = int(env.get("TEXTCLF_SHUTDOWN_TIMEOUT_SECS") or DEFAULT_SHUTDOWN_SECS)
            cmd = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
            pre_stop = int(cmd[1]) if len(cmd) == 2 and cmd[0] == "sleep" else 0
            if grace <= pre_stop + drain:
                out.append("%s: %s: terminationGracePeriodSeconds %s is not above the preStop sleep (%s s) "
                           "plus the drain bound (%s s)" % (where, name_of(d), grace, pre_stop, drain))

    for where, s in by_kind.get("Service", []):
        selector = s["spec"].get("selector") or {}
        targets = [d for _, d in workloads if matches(selector, template_labels(d))]
        if not targets:
            out.append("%s: %s: its selector matches no pod template" % (where, name_of(s)))
        for p in s["spec"].get("ports", []):
            tp = p.get("targetPort")
            if isinstance(tp, str):
                for d in targets:
                    if tp not in container_ports(d["spec"]["template"]["spec"]):
                        out.append("%s: %s: targetPort %r is not a named port of %s"
                                   % (where, name_of(s), tp, name_of(d)))

    for where, p in by_kind.get("PodDisruptionBudget", []):
        selector = (p["spec"].get("selector") or {}).get("matchLabels") or {}
        if not any(matches(selector, template_labels(d)) for _, d in workloads):
            out.append("%s: %s: its selector matches no pod template" % (where, name_of(p)))

    for where, h in by_kind.get("HorizontalPodAutoscaler", []):
        ref = h["spec"]["scaleTargetRef"]
        target = [d for _, d in workloads
                  if d["kind"] == ref.get("kind") and d["metadata"]["name"] == ref.get("name")]
        if not target:
            out.append("%s: %s: scaleTargetRef %s/%s is not defined"
                       % (where, name_of(h), ref.get("kind"), ref.get("name")))
        elif "replicas" in target[0]["spec"]:
            out.append("%s: %s sets spec.replicas, which every apply would reset under the HPA"
                       % (where, name_of(target[0])))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--k8s-version", action="append", required=True)
    ap.add_argument("--rendered", help="the kustomize output of DIR, checked as well")
    args = ap.parse_args()

    errors = []
    kust_path = os.path.join(args.dir, "kustomization.yaml")
    manifests = sorted(f for f in os.listdir(args.dir)
                       if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml")
    if not manifests:
        errors.append("%s: no manifests" % args.dir)
    if os.path.exists(kust_path):
        listed = load(kust_path)[0].get("resources") or []
        for f in sorted(set(listed) - set(manifests)):
            errors.append("kustomization.yaml lists %s, which does not exist" % f)
        for f in sorted(set(manifests) - set(listed)):
            errors.append("kustomization.yaml does not list %s" % f)

    docs = []
    for f in manifests:
        path = os.path.join(args.dir, f)
        try:
            found = load(path)
        except yaml.YAMLError as e:
            errors.append("%s: not YAML: %s" % (path, e))
            continue
        if not found:
            errors.append("%s: no resources" % path)
        for i, d in enumerate(found):
            where = "%s[%d]" % (path, i) if len(found) > 1 else path
            errs = schema_errors(where, d, args.k8s_version)
            errors += errs
            if not errs:
                docs.append((where, d))
    errors += consistency_errors(docs)
    count = len(docs)

    if args.rendered:
        rendered = load(args.rendered)
        if len(rendered) != count:
            errors.append("kustomize rendered %d resources, the files hold %d" % (len(rendered), count))
        rdocs = []
        for i, d in enumerate(rendered):
            where = "kustomize output [%d]" % i
            errs = schema_errors(where, d, args.k8s_version)
            errors += errs
            if not errs:
                rdocs.append((where, d))
        errors += consistency_errors(rdocs)

    for e in errors:
        print("ERROR " + e)
    versions = ", ".join(args.k8s_version)
    if errors:
        print("k8s: %d problem(s) in %s (kubernetes-validate %s, strict, Kubernetes %s)"
              % (len(errors), args.dir, KV_VERSION, versions))
        return 1
    print("k8s: %d resources in %d files valid%s (kubernetes-validate %s, strict, Kubernetes %s)"
          % (count, len(manifests), " and as rendered by kustomize" if args.rendered else "",
             KV_VERSION, versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
