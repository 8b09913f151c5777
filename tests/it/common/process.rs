//! Real `screenrec serve` processes on loopback, for multi-instance tests.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Instance {
    pub base: String,
    child: Child,
    log: std::path::PathBuf,
    env: HashMap<String, String>,
    log_dir: std::path::PathBuf,
    n: usize,
    port: u16,
    starts: usize,
}

/// How an instance is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL: it dies mid-work, with no chance to clean up.
    Kill,
    /// SIGTERM: it stops taking work and finishes or hands back what it holds.
    Term,
}

impl Instance {
    /// Start `screenrec serve` with `env` on a free port and wait for `/healthz`.
    pub async fn start(env: &HashMap<String, String>, log_dir: &std::path::Path, n: usize) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut instance = Self {
            base: format!("http://127.0.0.1:{port}"),
            child: Self::spawn(env, port, &log_dir.join(format!("instance-{n}.log"))),
            log: log_dir.join(format!("instance-{n}.log")),
            env: env.clone(),
            log_dir: log_dir.to_owned(),
            n,
            port,
            starts: 1,
        };
        instance.wait_healthy().await;
        instance
    }

    fn spawn(env: &HashMap<String, String>, port: u16, log: &std::path::Path) -> Child {
        Command::new(env!("CARGO_BIN_EXE_screenrec"))
            .arg("serve")
            .envs(env)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("starting screenrec serve")
    }

    /// Stop it as told and start it again on the same port (as a supervisor or an
    /// orchestrator restarts a container), then wait until it is ready. A SIGTERM must end the
    /// process cleanly (exit 0) within `SHUTDOWN_GRACE_SECS` and a few seconds more.
    pub async fn restart(&mut self, how: Stop) {
        match how {
            Stop::Kill => self.kill(),
            Stop::Term => {
                let grace: u64 = self
                    .env
                    .get("SHUTDOWN_GRACE_SECS")
                    .map_or(30, |v| v.parse().unwrap());
                let status = self.terminate(Duration::from_secs(grace + 10)).await;
                assert!(
                    status.success(),
                    "instance {} exited with {status} on SIGTERM: {}",
                    self.n,
                    self.log_text()
                );
            }
        }
        self.start_again().await;
    }

    /// Start it again on the same port, once it has stopped, and wait until it is ready.
    pub async fn start_again(&mut self) {
        self.starts += 1;
        self.log = self
            .log_dir
            .join(format!("instance-{}-start-{}.log", self.n, self.starts));
        self.child = Self::spawn(&self.env, self.port, &self.log);
        self.wait_healthy().await;
    }

    /// SIGTERM, then wait (at most `within`) for the process to exit by itself.
    async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "instance {} still running {within:?} after SIGTERM: {}",
                self.n,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("instance exited with {status}: {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "instance not ready: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: the process dies mid-work, with no chance to clean up.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `screenrec serve` processes sharing one LocalStack bucket and one Redis.
pub struct Cluster {
    pub instances: Vec<Instance>,
    pub env: HashMap<String, String>,
    pub s3_endpoint: String,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Start `n` instances with `vars` on top of the test configuration; `None` when Redis and
    /// LocalStack are not configured (outside `scripts/test`).
    pub async fn start(n: usize, vars: &[(&str, &str)]) -> Option<Self> {
        let (Some(redis), Some((_, s3))) = (
            super::redis_url(),
            super::s3_endpoints()
                .into_iter()
                .find(|(name, _)| name == "localstack"),
        ) else {
            return None;
        };
        let backend = super::Backend {
            name: "localstack+redis".into(),
            s3_endpoint: Some(s3.clone()),
            redis_url: Some(redis),
        };
        let dir = tempfile::tempdir().unwrap();
        let mut env = super::env_for(&backend, dir.path()).await;
        for (k, v) in vars {
            env.insert((*k).into(), (*v).into());
        }
        let mut cluster = Self {
            instances: Vec::new(),
            env,
            s3_endpoint: s3,
            dir,
        };
        for _ in 0..n {
            cluster.add().await;
        }
        Some(cluster)
    }

    /// Start one more instance.
    pub async fn add(&mut self) -> &Instance {
        let n = self.instances.len();
        let instance = Instance::start(&self.env, self.dir.path(), n).await;
        self.instances.push(instance);
        &self.instances[n]
    }

    /// A client spreading requests round robin over the instances.
    pub fn client(&self) -> super::Client {
        super::Client::new(self.instances.iter().map(|i| i.base.clone()).collect())
    }

    /// The cluster's bucket, read directly.
    pub async fn store(&self) -> screenrec::store::S3Store {
        screenrec::store::S3Store::connect(&screenrec::store::S3Settings {
            bucket: self.env["S3_BUCKET"].clone(),
            region: Some("us-east-1".into()),
            endpoint: Some(self.s3_endpoint.clone()),
            force_path_style: true,
        })
        .await
    }
}

/// nginx from Debian as a round-robin load balancer in front of a cluster, configured from
/// `infra/nginx/screenrec.conf.template` (the file the compose deployment uses).
pub struct Nginx {
    pub base: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    pub async fn start(cluster: &Cluster) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let upstreams: String = cluster
            .instances
            .iter()
            .map(|i| {
                // As in infra/docker-compose.yml.
                format!(
                    "server {} fail_timeout=2s;",
                    i.base.trim_start_matches("http://")
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        let template = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("infra/nginx/screenrec.conf.template"),
        )
        .unwrap();
        let site = template
            .replace("${SCREENREC_UPSTREAMS}", &upstreams)
            .replace("${SCREENREC_LISTEN}", &format!("127.0.0.1:{port}"));
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nuser root;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{}}\nhttp {{\n\
             log_format upstream '$request_method $uri $status $upstream_addr';\n\
             access_log {d}/access.log upstream;\n\
             client_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi;\nuwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
             {site}\n}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let check = Command::new("nginx")
            .arg("-t")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .output()
            .expect("running nginx (Debian's nginx package)");
        assert!(
            check.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { base, child, dir }
    }

    /// The upstream each proxied request went to, from the access log.
    pub fn upstreams_used(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
            .collect()
    }
}

impl Drop for Nginx {
    /// SIGTERM, so the master stops its workers too (a SIGKILL would leave them running);
    /// SIGKILL only if it is still there two seconds later.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
