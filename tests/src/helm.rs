//! The Helm chart (`deploy/helm/retrace`) as `helm template` renders it, and its workloads run
//! here as processes, exactly as the manifests describe them: each pod's container command,
//! arguments, environment (values, the pod's own fields, Secrets, `$(NAME)` references) and
//! mounted ConfigMaps and Secrets, with the mount paths mapped to temporary folders and the
//! cluster's DNS names to one loopback address per pod.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::Value;

use crate::{ServiceProcess, repo};

/// The Kubernetes version every render and schema check names (`deploy/helm/check`).
pub const KUBE_VERSION: &str = "1.37.0";

/// The `ENV` instructions of the Dockerfile (the image every workload runs), in order:
/// a container's environment starts from them.
pub fn image_env() -> Vec<(String, String)> {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile"))
        .expect("the Dockerfile is at the workspace root");
    let mut env = Vec::new();
    let mut in_env = false;
    for line in dockerfile.lines() {
        let line = line.trim();
        let rest = match line.strip_prefix("ENV ") {
            Some(rest) => rest,
            None if in_env => line,
            None => continue,
        };
        in_env = line.ends_with('\\');
        env.extend(rest.split_whitespace().filter_map(|word| {
            let (name, value) = word.split_once('=')?;
            Some((name.to_owned(), value.trim_matches('"').to_owned()))
        }));
    }
    env
}

/// The namespace the tests render into.
pub const NAMESPACE: &str = "retrace";

/// The chart's folder.
pub fn chart() -> PathBuf {
    repo().join("deploy/helm/retrace")
}

/// The helm binary: `RETRACE_HELM`, else `helm` on the PATH, else the one `go install` put in
/// Go's bin folder (where `tests/setup` installs it).
pub fn helm() -> PathBuf {
    if let Some(path) = std::env::var_os("RETRACE_HELM").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("helm"))
        .find(|candidate| candidate.is_file());
    let go_bin = || {
        let output = Command::new("go").args(["env", "GOPATH"]).output().ok()?;
        let gopath = String::from_utf8(output.stdout).ok()?;
        Some(Path::new(gopath.trim()).join("bin/helm")).filter(|p| p.is_file())
    };
    on_path.or_else(go_bin).unwrap_or_else(|| {
        panic!(
            "helm is not installed: run tests/setup (it runs `go install \
             helm.sh/helm/v4/cmd/helm@v4.3.2`), or point RETRACE_HELM at one"
        )
    })
}

/// `helm template ARGS --kube-version …`, run from the repository's root (where a relative
/// chart path starts): every object rendered, hooks included, in order.
pub fn template(args: &[&str]) -> Vec<Value> {
    let output = Command::new(helm())
        .current_dir(repo())
        .arg("template")
        .args(args)
        .args(["--kube-version", KUBE_VERSION])
        .output()
        .expect("helm runs");
    assert!(
        output.status.success(),
        "helm template {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("helm writes UTF-8");
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            serde::Deserialize::deserialize(document).expect("helm renders YAML documents")
        })
        .filter(|object: &Value| !object.is_null())
        .collect()
}

/// The objects of `kind`, in render order.
pub fn of_kind<'a>(objects: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
    objects.iter().filter(move |o| o["kind"] == kind)
}

pub fn name(object: &Value) -> &str {
    object["metadata"]["name"]
        .as_str()
        .expect("every object has a name")
}

/// One pod of a rendered workload, ready to start.
pub struct Pod {
    pub name: String,
    /// `app.kubernetes.io/component`: archive, gateway, worker, test.
    pub component: String,
    pub labels: BTreeMap<String, String>,
    pub ip: Ipv4Addr,
    /// Its (only) container, as rendered.
    pub container: Value,
    /// The pod's volumes, and the StatefulSet's claim templates' names.
    volumes: Vec<Value>,
    claims: Vec<String>,
    /// The StatefulSet's headless Service, for the pod's own DNS name.
    subdomain: Option<String>,
    /// `terminationGracePeriodSeconds`: how long the kubelet waits after SIGTERM.
    pub grace_seconds: Option<i64>,
}

impl Pod {
    /// Its DNS name through its StatefulSet's headless Service.
    pub fn dns_name(&self, cluster_domain: &str) -> Option<String> {
        let service = self.subdomain.as_ref()?;
        Some(format!(
            "{}.{service}.{NAMESPACE}.svc.{cluster_domain}",
            self.name
        ))
    }

    /// The container port named `port`, or `port` itself when it is a number.
    pub fn port(&self, port: &Value) -> u16 {
        if let Some(number) = port.as_u64() {
            return number as u16;
        }
        let wanted = port.as_str().expect("a port is a name or a number");
        self.container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == wanted)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("{}: no container port named {wanted}", self.name))
            as u16
    }

    /// The environment variable `name` as rendered (a literal value only).
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.container["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == name)?["value"]
            .as_str()
    }
}

/// Every pod the rendered workloads would run (StatefulSets' replicas, Deployments' replicas
/// or their autoscaler's minimum), and the `helm test` pods, each given an address
/// `127.<net>.<n>`.
pub fn pods(objects: &[Value], net: [u8; 2]) -> Vec<Pod> {
    let mut pods = Vec::new();
    let mut next = 1u8;
    let mut add = |template: &Value, pod_name: String, subdomain: Option<String>, claims| {
        let spec = &template["spec"];
        let containers = spec["containers"].as_array().expect("a pod has containers");
        assert_eq!(containers.len(), 1, "{pod_name}: one container a pod");
        let labels: BTreeMap<String, String> =
            serde_json::from_value(template["metadata"]["labels"].clone()).unwrap_or_default();
        pods.push(Pod {
            component: labels
                .get("app.kubernetes.io/component")
                .cloned()
                .unwrap_or_else(|| panic!("{pod_name} has no component label")),
            labels,
            ip: Ipv4Addr::new(127, net[0], net[1], next),
            container: containers[0].clone(),
            volumes: spec["volumes"].as_array().cloned().unwrap_or_default(),
            claims,
            subdomain,
            grace_seconds: spec["terminationGracePeriodSeconds"].as_i64(),
            name: pod_name,
        });
        next += 1;
    };
    for set in of_kind(objects, "StatefulSet") {
        let claims: Vec<String> = set["spec"]["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|claim| name(claim).to_owned())
            .collect();
        let headless = set["spec"]["serviceName"].as_str().map(str::to_owned);
        for ordinal in 0..set["spec"]["replicas"].as_u64().unwrap_or(1) {
            let pod = format!("{}-{ordinal}", name(set));
            add(
                &set["spec"]["template"],
                pod,
                headless.clone(),
                claims.clone(),
            );
        }
    }
    for deployment in of_kind(objects, "Deployment") {
        let autoscaled = of_kind(objects, "HorizontalPodAutoscaler")
            .find(|hpa| hpa["spec"]["scaleTargetRef"]["name"] == name(deployment));
        let replicas = match autoscaled {
            Some(hpa) => hpa["spec"]["minReplicas"].as_u64().unwrap_or(1),
            None => deployment["spec"]["replicas"].as_u64().unwrap_or(1),
        };
        for n in 0..replicas {
            let pod = format!("{}-{n}", name(deployment));
            add(&deployment["spec"]["template"], pod, None, Vec::new());
        }
    }
    for test in of_kind(objects, "Pod") {
        add(test, name(test).to_owned(), None, Vec::new());
    }
    pods
}

/// The Secrets a pod may read: those rendered, and those the cluster is assumed to hold
/// (`existing`: name → key → value).
pub fn secrets(
    objects: &[Value],
    existing: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut secrets = existing.clone();
    for secret in of_kind(objects, "Secret") {
        let data = secret["data"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(value.as_str().expect("Secret data is base64 text"))
                    .expect("Secret data is base64");
                (key.clone(), String::from_utf8(bytes).expect("text secrets"))
            })
            .collect();
        secrets.insert(name(secret).to_owned(), data);
    }
    secrets
}

/// How a manifest's cluster names become this machine's: hosts (pod and Service DNS names)
/// to loopback addresses, and mount paths to folders.
pub struct Mapping {
    hosts: BTreeMap<String, Ipv4Addr>,
}

impl Mapping {
    /// Each pod's DNS name to its address, and each Service (by every name a pod may use for
    /// it) to the address of the first pod it selects. A Service's port must be its target's
    /// (the mapping keeps ports as written).
    pub fn new(objects: &[Value], pods: &[Pod], cluster_domain: &str) -> Mapping {
        let mut hosts = BTreeMap::new();
        for pod in pods {
            if let Some(dns) = pod.dns_name(cluster_domain) {
                hosts.insert(dns, pod.ip);
            }
        }
        for service in of_kind(objects, "Service") {
            let selector: BTreeMap<String, String> =
                serde_json::from_value(service["spec"]["selector"].clone()).unwrap_or_default();
            let Some(target) = pods.iter().find(|pod| {
                pod.component != "test"
                    && selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
            }) else {
                panic!("Service {} selects no pod", name(service));
            };
            for port in service["spec"]["ports"].as_array().into_iter().flatten() {
                assert_eq!(
                    port["port"].as_u64(),
                    Some(target.port(&port["targetPort"]) as u64),
                    "Service {}: its port is not the pod's",
                    name(service)
                );
            }
            let short = name(service);
            for alias in [
                short.to_owned(),
                format!("{short}.{NAMESPACE}"),
                format!("{short}.{NAMESPACE}.svc"),
                format!("{short}.{NAMESPACE}.svc.{cluster_domain}"),
            ] {
                hosts.insert(alias, target.ip);
            }
        }
        Mapping { hosts }
    }

    /// `text` with the host of every `scheme://host` URL that names a pod or Service replaced
    /// by its address.
    pub fn hosts_in(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find("://") {
            let (before, after) = rest.split_at(at + 3);
            out.push_str(before);
            let end = after
                .find(|c: char| c == ':' || c == '/' || c == '"' || c.is_whitespace())
                .unwrap_or(after.len());
            let host = &after[..end];
            match self.hosts.get(host) {
                Some(ip) => out.push_str(&ip.to_string()),
                None => out.push_str(host),
            }
            rest = &after[end..];
        }
        out.push_str(rest);
        out
    }
}

/// What a pod's container is started with: its program, arguments and environment, resolved
/// as the kubelet would, and its volumes written under `root`.
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Prepares `pod` under `root/<pod>`: writes its ConfigMap and Secret volumes there (paths
/// inside them rewritten to the folders), makes its empty and claimed volumes, and resolves its
/// command and environment. The image's environment comes first (`image_env`), as in the
/// container. `bin` holds the Retrace binaries a `retrace-*` command names.
pub fn prepare(
    pod: &Pod,
    objects: &[Value],
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
    mapping: &Mapping,
    image_env: &[(String, String)],
    root: &Path,
    bin: &Path,
) -> Launch {
    let home = root.join(&pod.name);
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for mount in pod.container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let volume = mount["name"].as_str().expect("a mount names its volume");
        let path = mount["mountPath"].as_str().expect("a mount has a path");
        mounts.push((path.to_owned(), home.join(volume)));
    }
    // Longest first, so /var/lib/retrace/x is never read as /var/lib/retrace + /x.
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    let paths_in = |text: &str| replace_paths(text, &mounts);
    for (_, dir) in &mounts {
        std::fs::create_dir_all(dir).expect("a folder for each volume");
    }
    for volume in &pod.volumes {
        let volume_name = volume["name"].as_str().expect("a volume has a name");
        let dir = home.join(volume_name);
        let files: BTreeMap<String, String> = if let Some(map) = volume["configMap"].as_object() {
            let wanted = map["name"].as_str().expect("a ConfigMap volume names it");
            let config_map = of_kind(objects, "ConfigMap")
                .find(|c| name(c) == wanted)
                .unwrap_or_else(|| panic!("{}: ConfigMap {wanted} is not rendered", pod.name));
            serde_json::from_value(config_map["data"].clone()).expect("ConfigMap data is text")
        } else if let Some(secret) = volume["secret"].as_object() {
            let wanted = secret["secretName"]
                .as_str()
                .expect("a Secret volume names it");
            let data = secrets.get(wanted).unwrap_or_else(|| {
                panic!(
                    "{}: Secret {wanted} is neither rendered nor given",
                    pod.name
                )
            });
            match secret.get("items").and_then(Value::as_array) {
                Some(items) => items
                    .iter()
                    .map(|item| {
                        let key = item["key"].as_str().expect("an item names a key");
                        let value = data.get(key).unwrap_or_else(|| {
                            panic!("{}: Secret {wanted} has no key {key}", pod.name)
                        });
                        (
                            item["path"].as_str().unwrap_or(key).to_owned(),
                            value.clone(),
                        )
                    })
                    .collect(),
                None => data.clone(),
            }
        } else {
            assert!(
                volume.get("emptyDir").is_some(),
                "{}: volume {volume_name} is of a kind this harness does not map",
                pod.name
            );
            BTreeMap::new()
        };
        std::fs::create_dir_all(&dir).expect("the volume's folder");
        for (file, content) in files {
            std::fs::write(dir.join(file), mapping.hosts_in(&paths_in(&content)))
                .expect("a volume's file is written");
        }
    }
    for claim in &pod.claims {
        std::fs::create_dir_all(home.join(claim)).expect("the claim's folder");
    }

    let mut env: Vec<(String, String)> = image_env.to_vec();
    for entry in pod.container["env"].as_array().into_iter().flatten() {
        let variable = entry["name"].as_str().expect("a variable has a name");
        let value = if let Some(value) = entry["value"].as_str() {
            expand(value, &env)
        } else if let Some(field) = entry["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match field {
                "metadata.name" => pod.name.clone(),
                "metadata.namespace" => NAMESPACE.to_owned(),
                other => panic!("{}: fieldRef {other} is not mapped here", pod.name),
            }
        } else if let Some(reference) = entry["valueFrom"]["secretKeyRef"].as_object() {
            let secret = reference["name"].as_str().expect("a secretKeyRef names it");
            let key = reference["key"]
                .as_str()
                .expect("a secretKeyRef names a key");
            secrets
                .get(secret)
                .and_then(|data| data.get(key))
                .unwrap_or_else(|| panic!("{}: {variable}: no Secret {secret} key {key}", pod.name))
                .clone()
        } else {
            panic!(
                "{}: {variable} has a source this harness does not map",
                pod.name
            )
        };
        env.retain(|(existing, _)| existing != variable);
        env.push((variable.to_owned(), value));
    }
    let env = env
        .into_iter()
        .map(|(variable, value)| {
            let value = mapping.hosts_in(&paths_in(&value));
            let value = match value.strip_prefix("0.0.0.0:") {
                Some(port) => format!("{}:{port}", pod.ip),
                None => value,
            };
            (variable, value)
        })
        .collect();

    let command: Vec<String> =
        serde_json::from_value(pod.container["command"].clone()).expect("a command is set");
    let args: Vec<String> =
        serde_json::from_value(pod.container["args"].clone()).unwrap_or_default();
    let program = match command[0].as_str() {
        retrace if retrace.starts_with("retrace") => bin.join(retrace),
        other => PathBuf::from(other),
    };
    let args = command[1..]
        .iter()
        .chain(&args)
        .map(|arg| mapping.hosts_in(&paths_in(arg)))
        .collect();
    Launch { program, args, env }
}

/// `text` with every whole path that starts with one of `mounts` (longest first) moved under
/// its folder, in one pass, so a folder's own path is never rewritten again.
fn replace_paths(text: &str, mounts: &[(String, PathBuf)]) -> String {
    let starts_path = |before: Option<char>| {
        before.is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '/' | '.' | '_' | '-')))
    };
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < text.len() {
        let rest = &text[index..];
        let found = starts_path(text[..index].chars().next_back())
            .then(|| {
                mounts.iter().find(|(path, _)| {
                    rest.starts_with(path.as_str())
                        && rest[path.len()..]
                            .chars()
                            .next()
                            .is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-')))
                })
            })
            .flatten();
        match found {
            Some((path, dir)) => {
                out.push_str(&dir.display().to_string());
                index += path.len();
            }
            None => {
                let c = rest.chars().next().expect("inside the text");
                out.push(c);
                index += c.len_utf8();
            }
        }
    }
    out
}

/// Kubernetes' `$(NAME)` references to variables defined before, expanded; `$$` escapes.
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some((name, after)) = after
            .strip_prefix('(')
            .and_then(|inner| inner.split_once(')'))
            && let Some((_, value)) = env.iter().find(|(n, _)| n == name)
        {
            out.push_str(value);
            rest = after;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

impl Launch {
    /// Starts it with only its own environment (and a PATH for the test pod's shell), its
    /// output in `log`.
    pub fn start(&self, log: &Path) -> ServiceProcess {
        let file = std::fs::File::create(log).expect("a log file");
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("the log file again"))
            .stderr(file);
        ServiceProcess::spawn(&mut command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_as_the_kubelet_does() {
        let env = vec![("USER".to_owned(), "ada".to_owned())];
        assert_eq!(expand("u=$(USER),p=$(MISSING)", &env), "u=ada,p=$(MISSING)");
        assert_eq!(expand("$$(USER) costs $5", &env), "$(USER) costs $5");
    }

    #[test]
    fn mount_paths_move_whole_and_once() {
        let mounts = vec![
            ("/var/lib/retrace".to_owned(), PathBuf::from("/tmp/p/data")),
            ("/tmp".to_owned(), PathBuf::from("/tmp/p/tmp")),
        ];
        assert_eq!(
            replace_paths(
                "d=/var/lib/retrace/archive t=/tmp x=/tmpfs /etc/tmp",
                &mounts
            ),
            "d=/tmp/p/data/archive t=/tmp/p/tmp x=/tmpfs /etc/tmp"
        );
    }

    #[test]
    fn only_known_hosts_of_urls_are_mapped() {
        let mapping = Mapping {
            hosts: BTreeMap::from([("a-archive".to_owned(), Ipv4Addr::new(127, 9, 9, 1))]),
        };
        assert_eq!(
            mapping.hosts_in(r#"["http://a-archive:7070", "http://a-archive-headless:7070/x"]"#),
            r#"["http://127.9.9.1:7070", "http://a-archive-headless:7070/x"]"#
        );
    }
}
