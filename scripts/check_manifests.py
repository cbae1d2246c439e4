#!/usr/bin/env python3
"""Offline checks of deploy/: Kubernetes manifests, the compose file, the Dockerfile and the
hotline.toml files they carry.

- Kubernetes: every object is validated against the Kubernetes OpenAPI schemas that the
  kubernetes-validate package ships (strict: unknown fields are errors); the ServiceMonitor,
  a CRD those schemas lack, is checked by hand. Then what ties the objects together: selectors
  and labels, ports and probes, the ConfigMap the pods mount, the instance id from the pod name,
  the resources the issue asks for.
- Compose: takes the output of `docker compose config` (the real parser's normalized form,
  --compose-config) and checks that what it points at exists.
- Dockerfile: parsed with the `dockerfile` package (BuildKit's own parser).
- hotline.toml (deploy/ and the ConfigMap's): parses, and has only keys that
  config/hotline.toml documents, since hotline refuses unknown keys.
Exits 1 listing every problem.
"""
import argparse
import sys
import tomllib
from pathlib import Path

import dockerfile
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"
PORT = 9464
errors = []


def check(ok, message):
    if not ok:
        errors.append(message)
    return ok


def known_config_keys():
    """(section, key) pairs of config/hotline.toml, including the commented-out examples."""
    keys, section = set(), None
    for line in (ROOT / "config/hotline.toml").read_text().splitlines():
        text = line.lstrip("# ").strip()
        if text.startswith("[") and text.endswith("]") and not line.startswith("#"):
            section = text.strip("[]")
            keys.add((section, None))
        elif section and "=" in text and text.split("=")[0].strip().replace("_", "").isalnum():
            keys.add((section, text.split("=")[0].strip()))
    return keys


def check_hotline_toml(name, text):
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        check(False, f"{name}: not TOML: {e}")
        return {}
    known = known_config_keys()
    for section, table in config.items():
        if not check(isinstance(table, dict) and (section, None) in known, f"{name}: unknown section [{section}]"):
            continue
        for key, value in table.items():
            if section == "kafka" and key == "properties":
                continue  # librdkafka's own properties, free-form
            check((section, key) in known, f"{name}: [{section}] {key} is not a key hotline knows")
    check("brokers" in config.get("kafka", {}), f"{name}: [kafka] brokers is required")
    check(config.get("http", {}).get("listen") == f"0.0.0.0:{PORT}",
          f"{name}: http.listen must be 0.0.0.0:{PORT} in a container, or nothing outside can reach it")
    return config


def check_kubernetes():
    objects = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        except yaml.YAMLError as e:
            check(False, f"{path.name}: not YAML: {e}")
            continue
        for doc in docs:
            name = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            objects[doc.get("kind")] = doc
            if doc.get("kind") == "ServiceMonitor":
                continue
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                check(False, f"{name}: {'.'.join(map(str, e.path))}: {e.message}")
            except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
                check(False, f"{name}: {e.message}")
    for kind in ("Deployment", "Service", "ConfigMap", "ServiceMonitor"):
        check(kind in objects, f"deploy/kubernetes: no {kind}")
    if errors:
        return
    deployment, service, configmap, monitor = (objects[k] for k in ("Deployment", "Service", "ConfigMap", "ServiceMonitor"))
    spec = deployment["spec"]
    pod = spec["template"]
    pod_labels = pod["metadata"].get("labels", {})
    check(spec["replicas"] >= 2, "Deployment: several replicas are the point of one consumer group")
    check(spec["selector"]["matchLabels"].items() <= pod_labels.items(), "Deployment: selector does not match its pods")
    check(service["spec"]["selector"].items() <= pod_labels.items(), "Service: selector does not match the pods")
    annotations = pod["metadata"].get("annotations", {})
    check(annotations.get("prometheus.io/scrape") == "true" and annotations.get("prometheus.io/port") == str(PORT),
          "Deployment: pods lack prometheus.io/scrape and prometheus.io/port annotations")

    containers = pod["spec"]["containers"]
    check(len(containers) == 1, "Deployment: expected one container")
    c = containers[0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    check(PORT in ports.values(), f"Deployment: container does not expose {PORT}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        port = ports.get(get.get("port"), get.get("port"))
        check(get.get("path") == path and port == PORT, f"Deployment: {probe} must GET {path} on {PORT}")
    env = {e["name"]: e for e in c.get("env", [])}
    check(env.get("HOTLINE_KAFKA__INSTANCE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          "Deployment: HOTLINE_KAFKA__INSTANCE_ID must come from the pod name (fieldRef metadata.name)")
    resources = c.get("resources", {})
    check(resources.get("requests") == {"memory": "256Mi", "cpu": "500m"}, "Deployment: requests must be memory 256Mi, cpu 500m")
    check(resources.get("limits", {}).get("memory") == "1Gi", "Deployment: memory limit must be 1Gi")
    check(pod["spec"].get("securityContext", {}).get("runAsNonRoot") is True, "Deployment: pods must run as non-root")

    args = c.get("args", [])
    config_path = args[args.index("--config") + 1] if "--config" in args[:-1] else None
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    mounted = [name for name, v in volumes.items() if v.get("configMap", {}).get("name") == configmap["metadata"]["name"]]
    check(mounted and config_path and config_path.startswith(mounts.get(mounted[0], "?") + "/"),
          f"Deployment: --config {config_path} is not in the mounted ConfigMap {configmap['metadata']['name']}")
    key = Path(config_path or "").name
    if check(key in configmap.get("data", {}), f"ConfigMap: no key {key}"):
        check_hotline_toml(f"ConfigMap {key}", configmap["data"][key])

    check(monitor.get("apiVersion") == "monitoring.coreos.com/v1", "ServiceMonitor: apiVersion must be monitoring.coreos.com/v1")
    selector = monitor.get("spec", {}).get("selector", {}).get("matchLabels", {})
    check(selector and selector.items() <= service["metadata"].get("labels", {}).items(), "ServiceMonitor: selector does not match the Service")
    service_ports = {p.get("name") for p in service["spec"]["ports"]}
    endpoints = monitor.get("spec", {}).get("endpoints", [])
    check(endpoints and all(e.get("port") in service_ports for e in endpoints), "ServiceMonitor: endpoints must name a Service port")
    check(service["metadata"]["name"] == "hotline", 'Service: must be named "hotline": the ServiceMonitor makes it the job label')


def check_compose(text):
    try:
        services = yaml.safe_load(text)["services"]
    except (yaml.YAMLError, TypeError, KeyError) as e:
        check(False, f"compose config output unreadable: {e}")
        return
    check(services.get("kafka", {}).get("image", "").startswith("apache/kafka:"), "compose: kafka must use the apache/kafka image")
    build = services.get("hotline", {}).get("build", {})
    context = Path(build.get("context", "/nonexistent"))
    check(context.resolve() == ROOT, f"compose: hotline's build context {context} is not the repository root")
    check((context / build.get("dockerfile", "")).is_file(), "compose: hotline's Dockerfile does not exist")
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("/"):
                check(Path(source).exists(), f"compose: {name} mounts {source}, which does not exist")
    check_hotline_toml("deploy/hotline.toml", (DEPLOY / "hotline.toml").read_text())


def check_dockerfile():
    path = DEPLOY / "Dockerfile"
    try:
        commands = dockerfile.parse_file(str(path))
    except (dockerfile.GoParseError, dockerfile.GoIOError) as e:
        check(False, f"Dockerfile: {e}")
        return
    froms = [c for c in commands if c.cmd == "FROM"]
    check(len(froms) >= 2 and froms[0].value[0].startswith("rust:1"), "Dockerfile: the first stage must build from rust:1")
    check(froms and froms[-1].value[0] == "debian:bookworm-slim", "Dockerfile: the runtime stage must be debian:bookworm-slim")
    last = commands[commands.index(froms[-1]):]
    builder = commands[: commands.index(froms[-1])]
    check(any("cmake" in c.value[0] and "g++" in c.value[0] for c in builder if c.cmd == "RUN"),
          "Dockerfile: the builder must install cmake and g++ for librdkafka")
    users = [c.value[0] for c in last if c.cmd == "USER"]
    check(users and users[-1].split(":")[0] not in ("root", "0"), "Dockerfile: the runtime stage must switch to a non-root USER")
    entry = [c for c in last if c.cmd == "ENTRYPOINT"]
    check(entry and entry[-1].json and entry[-1].value == ("hotline",), 'Dockerfile: ENTRYPOINT must be ["hotline"]')
    cmd = [c for c in last if c.cmd == "CMD"]
    check(cmd and cmd[-1].json and cmd[-1].value == ("run", "--config", "/etc/hotline/hotline.toml"),
          'Dockerfile: CMD must be ["run", "--config", "/etc/hotline/hotline.toml"]')
    for c in commands:
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags):
            for source in c.value[:-1]:
                check((ROOT / source).exists(), f"Dockerfile line {c.start_line}: COPY {source}: not in the repository")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compose-config", type=Path, required=True, help="output of `docker compose config`")
    args = ap.parse_args()
    check_kubernetes()
    check_dockerfile()
    check_compose(args.compose_config.read_text())
    for e in errors:
        print(f"deploy check: {e}", file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
