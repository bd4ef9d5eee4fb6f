"""deploy/ checked without a cluster: kustomize renders, images, and a live scrape.

  - every kustomization (overlays/cpu, overlays/gpu, gateway) renders with
    `kubectl kustomize` (offline), and its objects hang together: probes on
    the served port and health services, Service and NetworkPolicy ports that
    name container ports, selectors that select the pods, the HPA on the
    Deployment, the grace period above preStop + drain timeout, non-root,
    read-only root, dropped capabilities, resources, the model volume;
  - every metric name that the HPA, prometheus-adapter's rules, the alerts,
    the dashboard and the endpoint picker use exists in a live scrape of the
    real server, with the semantics the gateway's model-server protocol
    asks for (queued and running gauges; KV-cache use a fraction);
  - the probes' health services answer SERVING on the real server;
  - the CPU and CUDA Dockerfiles do not drift apart (runtime packages,
    user, entrypoint, ports).

Environment (set by ctest): INFERD_BINARY, INFERD_SOURCE_DIR, PYTHONPATH (the
generated stubs and tests/integration/python).
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import unittest

import yaml

from inferd_testing import SOURCE_DIR, InferdServer, READINESS_SERVICE, INFERD_BINARY, pb

KUBERNETES = os.path.join(SOURCE_DIR, "deploy", "kubernetes")
KUSTOMIZATIONS = ("overlays/cpu", "overlays/gpu", "gateway")
ALERTS = os.path.join(SOURCE_DIR, "deploy", "prometheus", "alerts.yml")
DASHBOARD = os.path.join(SOURCE_DIR, "deploy", "grafana", "inferd-dashboard.json")
CPU_DOCKERFILE = os.path.join(SOURCE_DIR, "Dockerfile")
CUDA_DOCKERFILE = os.path.join(SOURCE_DIR, "deploy", "docker", "cuda.Dockerfile")

_METRIC = re.compile(r"\binferd_[a-zA-Z0-9_]+")


def render(kustomization):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise AssertionError("kubectl is not installed: run `make deps` (Debian package kubernetes-client)")
    run = subprocess.run([kubectl, "kustomize", os.path.join(KUBERNETES, kustomization)],
                         capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        raise AssertionError(f"kubectl kustomize {kustomization} failed:\n{run.stderr}")
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


def one(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


class Rendered:
    """One rendered overlay: the inferd Deployment, its container and config."""

    def __init__(self, kustomization):
        self.objects = render(kustomization)
        self.deployment = one(self.objects, "Deployment", "inferd")
        self.pod = self.deployment["spec"]["template"]
        self.container = next(c for c in self.pod["spec"]["containers"] if c["name"] == "inferd")
        self.ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        volume = next(v for v in self.pod["spec"]["volumes"] if v["name"] == "config")
        config_map = one(self.objects, "ConfigMap", volume["configMap"]["name"])
        self.config = yaml.safe_load(config_map["data"]["inferd.yaml"])
        mount = next(m for m in self.container["volumeMounts"] if m["name"] == "config")
        args = self.container["args"]
        self.config_path = args[args.index("--config") + 1]
        self.config_mount = mount["mountPath"]

    def resolve_port(self, port):
        return self.ports[port] if isinstance(port, str) else port


class OverlayTest(unittest.TestCase):
    """Structural checks, the same for every overlay."""

    KUSTOMIZATION = None

    @classmethod
    def setUpClass(cls):
        cls.r = Rendered(cls.KUSTOMIZATION)

    def test_config_is_the_mounted_file_and_listens_everywhere(self):
        self.assertEqual(os.path.dirname(self.r.config_path), self.r.config_mount)
        self.assertEqual(self.r.config["host"], "0.0.0.0")

    def test_ports_are_the_configured_ones(self):
        self.assertEqual(self.r.ports["grpc"], self.r.config["port"])
        self.assertEqual(self.r.ports["metrics"], self.r.config["metrics_port"])
        self.assertEqual(self.r.ports["http"], self.r.config["http_port"])

    def test_probes_use_grpc_health_on_the_served_port(self):
        c = self.r.container
        for probe, service in (("livenessProbe", ""), ("readinessProbe", READINESS_SERVICE),
                               ("startupProbe", READINESS_SERVICE)):
            self.assertIn("grpc", c[probe], probe)
            self.assertEqual(self.r.resolve_port(c[probe]["grpc"]["port"]), self.r.config["port"], probe)
            self.assertEqual(c[probe]["grpc"].get("service", ""), service, probe)
        startup = c["startupProbe"]
        self.assertGreaterEqual(startup["periodSeconds"] * startup["failureThreshold"], 300,
                                "the startup probe must allow minutes for model loading")

    def test_grace_period_covers_pre_stop_and_drain(self):
        grace = self.r.pod["spec"]["terminationGracePeriodSeconds"]
        pre_stop = 0
        command = self.r.container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        if command[:1] == ["sleep"]:
            pre_stop = float(command[1])
        self.assertGreater(grace, pre_stop + self.r.config["drain_timeout_seconds"])

    def test_non_root_read_only_no_capabilities_with_resources(self):
        pod_security = self.r.pod["spec"]["securityContext"]
        self.assertTrue(pod_security["runAsNonRoot"])
        self.assertNotEqual(pod_security["runAsUser"], 0)
        security = self.r.container["securityContext"]
        self.assertTrue(security["readOnlyRootFilesystem"])
        self.assertFalse(security["allowPrivilegeEscalation"])
        self.assertEqual(security["capabilities"]["drop"], ["ALL"])
        resources = self.r.container["resources"]
        self.assertIn("cpu", resources["requests"])
        self.assertIn("memory", resources["limits"])

    def test_service_ports_are_named_and_reach_the_container(self):
        service = one(self.r.objects, "Service", "inferd")
        self.assertTrue(selects(service["spec"]["selector"], self.r.pod["metadata"]["labels"]))
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        self.assertEqual(set(ports), {"grpc", "metrics", "http"})
        for name, port in ports.items():
            self.assertEqual(self.r.resolve_port(port["targetPort"]), self.r.ports[name])

    def test_selectors_select_the_pods(self):
        labels = self.r.pod["metadata"]["labels"]
        self.assertTrue(selects(self.r.deployment["spec"]["selector"]["matchLabels"], labels))
        pdb = one(self.r.objects, "PodDisruptionBudget")
        self.assertTrue(selects(pdb["spec"]["selector"]["matchLabels"], labels))
        policy = one(self.r.objects, "NetworkPolicy")
        self.assertTrue(selects(policy["spec"]["podSelector"]["matchLabels"], labels))
        monitor = one(self.r.objects, "ServiceMonitor")
        service = one(self.r.objects, "Service", "inferd")
        self.assertTrue(selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]))
        self.assertEqual([e["port"] for e in monitor["spec"]["endpoints"]], ["metrics"])

    def test_network_policy_opens_the_served_ports(self):
        policy = one(self.r.objects, "NetworkPolicy")
        opened = {self.r.resolve_port(p["port"]) for rule in policy["spec"]["ingress"] for p in rule["ports"]}
        self.assertEqual(opened, {self.r.config["port"], self.r.config["metrics_port"], self.r.config["http_port"]})
        # gRPC and HTTP from anywhere; metrics only from named sources.
        for rule in policy["spec"]["ingress"]:
            ports = {self.r.resolve_port(p["port"]) for p in rule["ports"]}
            if self.r.config["metrics_port"] in ports:
                self.assertIn("from", rule)

    def test_hpa_scales_the_deployment_on_the_queue(self):
        hpa = one(self.r.objects, "HorizontalPodAutoscaler")
        self.assertEqual(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment")
        self.assertEqual(hpa["spec"]["scaleTargetRef"]["name"], self.r.deployment["metadata"]["name"])
        (metric,) = hpa["spec"]["metrics"]
        self.assertEqual(metric["type"], "Pods")
        self.assertEqual(metric["pods"]["metric"]["name"], "inferd_requests_waiting")
        self.assertLessEqual(hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
        # prometheus-adapter serves that name.
        rules = yaml.safe_load(one(self.r.objects, "ConfigMap", "inferd-prometheus-adapter-rules")["data"]["config.yaml"])
        self.assertIn("inferd_requests_waiting", [r["name"]["as"] for r in rules["rules"]])


class CpuOverlayTest(OverlayTest):
    KUSTOMIZATION = "overlays/cpu"

    def test_serves_the_model_bundled_in_the_image(self):
        self.assertEqual(self.r.config["model"], "/opt/inferd/models/stories260K")
        self.assertRegex(self.r.container["image"], r"/inferd:")


class GpuOverlayTest(OverlayTest):
    KUSTOMIZATION = "overlays/gpu"

    def test_one_gpu_the_cuda_image_and_the_cuda_backend(self):
        resources = self.r.container["resources"]
        self.assertEqual(str(resources["limits"]["nvidia.com/gpu"]), "1")
        self.assertRegex(self.r.container["image"], r"/inferd-cuda:")
        self.assertEqual(self.r.config["backend"], "cuda")

    def test_model_from_the_pvc_mounted_read_only(self):
        volume = next(v for v in self.r.pod["spec"]["volumes"] if v["name"] == "models")
        claim = volume["persistentVolumeClaim"]["claimName"]
        one(self.r.objects, "PersistentVolumeClaim", claim)
        mount = next(m for m in self.r.container["volumeMounts"] if m["name"] == "models")
        self.assertTrue(mount["readOnly"])
        self.assertTrue(self.r.config["model"].startswith(mount["mountPath"] + "/"))


del OverlayTest  # only its subclasses run


def epp_flags(gateway):
    epp = one(gateway, "Deployment", "inferd-epp")
    args = epp["spec"]["template"]["spec"]["containers"][0]["args"]
    return dict(arg[2:].split("=", 1) for arg in args if arg.startswith("--"))


class GatewayTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.objects = render("gateway")
        cls.cpu = Rendered("overlays/cpu")

    def test_pool_selects_inferd_pods_and_names_its_picker(self):
        pool = one(self.objects, "InferencePool", "inferd")
        self.assertEqual(pool["apiVersion"], "inference.networking.k8s.io/v1")
        self.assertTrue(selects(pool["spec"]["selector"]["matchLabels"], self.cpu.pod["metadata"]["labels"]))
        picker = pool["spec"]["endpointPickerRef"]
        service = one(self.objects, "Service", picker["name"])
        self.assertIn(picker["port"]["number"], [p["port"] for p in service["spec"]["ports"]])
        epp = one(self.objects, "Deployment", "inferd-epp")
        self.assertTrue(selects(service["spec"]["selector"], epp["spec"]["template"]["metadata"]["labels"]))

    def test_picker_reads_our_metrics_port_and_pool(self):
        flags = epp_flags(self.objects)
        self.assertEqual(flags["pool-name"], "inferd")
        self.assertEqual(int(flags["model-server-metrics-port"]), self.cpu.config["metrics_port"])
        self.assertEqual(flags["model-server-metrics-path"], "/metrics")

    def test_route_sends_to_the_pool(self):
        route = one(self.objects, "HTTPRoute")
        refs = [ref for rule in route["spec"]["rules"] for ref in rule["backendRefs"]]
        self.assertEqual(refs, [{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "inferd"}])

    def test_network_policy_lets_the_picker_scrape(self):
        policy = one(self.cpu.objects, "NetworkPolicy")
        epp_labels = one(self.objects, "Deployment", "inferd-epp")["spec"]["template"]["metadata"]["labels"]
        sources = [s.get("podSelector", {}).get("matchLabels") for rule in policy["spec"]["ingress"]
                   for s in rule.get("from", [])]
        self.assertTrue(any(s and selects(s, epp_labels) for s in sources), sources)


class LiveServerTest(unittest.TestCase):
    """The names and probes above against the real server."""

    @classmethod
    def setUpClass(cls):
        if not os.access(INFERD_BINARY, os.X_OK):
            raise AssertionError(f"no server binary at {INFERD_BINARY} (set INFERD_BINARY)")
        cls.server = InferdServer()
        cls.addClassCleanup(cls.server.kill)
        cls.server.wait_until_ready()
        # One request, so that histograms and counters have moved.
        request = pb.GenerateRequest(text="Once upon a time")
        request.stopping.max_tokens = 8
        list(cls.server.stub.GenerateStream(request, timeout=60))
        cls.scrape = cls.server.scrape()
        cls.cpu = Rendered("overlays/cpu")
        cls.gateway = render("gateway")

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        if status != 0:
            raise AssertionError(f"the server exited with {status} after SIGTERM")
        cls.server.remove_log()

    def assert_exported(self, names, where):
        # Series (e.g. a histogram's _bucket) and family names (as in a title).
        exported = {name for name, _, _ in self.scrape.samples} | set(self.scrape.types)
        missing = sorted(set(names) - exported)
        self.assertEqual(missing, [], f"{where} uses metrics that /metrics does not have")
        self.assertTrue(names, f"no metric names found in {where}")

    def test_hpa_and_adapter_metrics_exist(self):
        hpa = one(self.cpu.objects, "HorizontalPodAutoscaler")
        names = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]]
        adapter = one(self.cpu.objects, "ConfigMap", "inferd-prometheus-adapter-rules")["data"]["config.yaml"]
        self.assert_exported(names + _METRIC.findall(adapter), "the HPA and prometheus-adapter rules")

    def test_alert_and_dashboard_metrics_exist(self):
        with open(ALERTS, encoding="utf-8") as f:
            alerts = yaml.safe_load(f)
        exprs = [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
        self.assert_exported({m for e in exprs for m in _METRIC.findall(e)}, "deploy/prometheus/alerts.yml")
        with open(DASHBOARD, encoding="utf-8") as f:
            dashboard = f.read()
        self.assert_exported(set(_METRIC.findall(dashboard)), "deploy/grafana/inferd-dashboard.json")

    def test_gateway_metrics_exist_with_the_protocols_semantics(self):
        flags = epp_flags(self.gateway)
        queued = flags["total-queued-requests-metric"]
        running = flags["total-running-requests-metric"]
        kv = flags["kv-cache-usage-percentage-metric"]
        self.assert_exported([queued, running, kv], "the endpoint picker's flags")
        for name in (queued, running, kv):
            self.assertEqual(self.scrape.types[name], "gauge", name)
        # Idle now: nothing queued or running, and the KV-cache use is a
        # fraction (0 to 1), not a percentage.
        self.assertEqual(self.scrape.value(queued), 0)
        self.assertEqual(self.scrape.value(running), 0)
        self.assertGreaterEqual(self.scrape.value(kv), 0.0)
        self.assertLessEqual(self.scrape.value(kv), 1.0)
        self.assertEqual(flags.get("lora-info-metric", ""), "", "inferd has no LoRA adapters")

    def test_probe_services_answer_serving(self):
        c = self.cpu.container
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            service = c[probe]["grpc"].get("service", "")
            self.assertEqual(self.server.health(service), "SERVING", f"{probe} asks for {service!r}")


def runtime_stage(path):
    """The instructions after the last FROM, as (keyword, rest) with continuations joined."""
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    instructions = [line.strip().split(None, 1) for line in text.splitlines()
                    if line.strip() and not line.strip().startswith("#")]
    last_from = max(i for i, parts in enumerate(instructions) if parts[0].upper() == "FROM")
    build = instructions[:last_from]
    runtime = [(parts[0].upper(), parts[1] if len(parts) > 1 else "") for parts in instructions[last_from + 1:]]
    return build, runtime


class DockerfilesTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.cpu_build, cls.cpu = runtime_stage(CPU_DOCKERFILE)
        cls.cuda_build, cls.cuda = runtime_stage(CUDA_DOCKERFILE)

    def values(self, stage, keyword):
        return [rest for k, rest in stage if k == keyword]

    def test_same_entrypoint_ports_user_and_stop_signal(self):
        for keyword in ("ENTRYPOINT", "EXPOSE", "USER", "STOPSIGNAL"):
            self.assertEqual(self.values(self.cpu, keyword), self.values(self.cuda, keyword), keyword)
        self.assertEqual(self.values(self.cpu, "ENTRYPOINT"), ['["inferd"]'])
        self.assertEqual(self.values(self.cpu, "EXPOSE"), ["50051 9400 8000"])
        self.assertNotIn(self.values(self.cpu, "USER")[0].split(":")[0], ("0", "root"))
        for stage in (self.cpu, self.cuda):
            self.assertEqual(json.loads(self.values(stage, "CMD")[0])[0], "serve")

    def test_same_runtime_library_set(self):
        def runtime_install(stage):
            runs = [rest for k, rest in stage if k == "RUN" and "apt-get install" in rest]
            self.assertEqual(len(runs), 1, "one apt-get install in the runtime stage")
            return shlex.split(runs[0])

        def derivation(build):
            runs = [" ".join(parts) for parts in build if "runtime_packages.sh" in " ".join(parts)]
            self.assertTrue(runs, "the build stage derives the runtime packages")
            return runs

        # Both install exactly the derived list, and nothing by hand.
        self.assertEqual(runtime_install(self.cpu), runtime_install(self.cuda))
        self.assertIn("/usr/share/inferd/runtime-packages.txt", runtime_install(self.cpu))
        self.assertEqual(self.values(self.cpu, "COPY")[0], self.values(self.cuda, "COPY")[0])
        for build in (self.cpu_build, self.cuda_build):
            self.assertTrue(any("runtime_packages.sh /out/bin/inferd /out/bin/inferd-bench" in run
                                for run in derivation(build)))

    def test_cpu_base_is_an_argument_of_both_stages(self):
        with open(CPU_DOCKERFILE, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("ARG BASE=debian:bookworm-slim", text)
        self.assertEqual(re.findall(r"^FROM (\S+)", text, re.MULTILINE), ["${BASE}", "${BASE}"])

    def test_dockerignore_keeps_what_the_build_copies(self):
        with open(os.path.join(SOURCE_DIR, ".dockerignore"), encoding="utf-8") as f:
            ignored = {line.strip() for line in f if line.strip() and not line.startswith("#")}
        for path in (CPU_DOCKERFILE, CUDA_DOCKERFILE):
            with open(path, encoding="utf-8") as f:
                copied = re.findall(r"^COPY (?!--from)(\S+)", f.read(), re.MULTILINE)
            for source in copied:
                self.assertTrue(os.path.exists(os.path.join(SOURCE_DIR, source)), source)
                self.assertNotIn(source.split("/")[0], ignored, f"{path} copies {source}, which .dockerignore drops")


if __name__ == "__main__":
    unittest.main()
