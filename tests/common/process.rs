//! `hotline run` as a separate process, the way it is deployed, and the broker script.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How to start a process.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `kafka.instance_id` (static membership).
    pub instance_id: Option<String>,
    /// Where its logs go (appended, as JSON lines at `info`); discarded when `None`.
    pub log: Option<PathBuf>,
    /// More `HOTLINE_*` settings.
    pub env: Vec<(String, String)>,
}

/// A `hotline run` process with its HTTP listener on a free port; killed (SIGKILL) when
/// dropped, so a failing test leaves none behind.
pub struct Hotline {
    child: Child,
    /// Where its /metrics, /healthz and /readyz are served.
    pub listen: String,
}

impl Hotline {
    pub fn start(config: &Path, options: &Options) -> Hotline {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen = format!("127.0.0.1:{port}");
        let mut command = Command::new(env!("CARGO_BIN_EXE_hotline"));
        match &options.log {
            Some(log) => {
                let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
                command.args(["--log-format", "json"]).env("RUST_LOG", "info").stderr(log);
            }
            None => {
                command.env("RUST_LOG", "warn").stderr(Stdio::null());
            }
        }
        command
            .args(["run", "--config", config.to_str().unwrap()])
            .env("HOTLINE_HTTP__LISTEN", &listen)
            .envs(options.env.iter().cloned())
            .stdout(Stdio::null());
        if let Some(id) = &options.instance_id {
            command.env("HOTLINE_KAFKA__INSTANCE_ID", id);
        }
        Hotline { child: command.spawn().unwrap(), listen }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether `/readyz` answers 200.
    pub async fn ready(&self) -> bool {
        reqwest::get(format!("http://{}/readyz", self.listen)).await.is_ok_and(|r| r.status().is_success())
    }

    pub async fn wait_ready(&self, within: Duration) {
        let started = Instant::now();
        while !self.ready().await {
            assert!(started.elapsed() < within, "{} not ready within {within:?}", self.listen);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of a metric on its `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("http://{}/metrics", self.listen)).await.unwrap().text().await.unwrap();
        super::metric(&text, name)
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn term(&self) {
        Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap();
    }

    /// SIGTERM, and waits for it to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.term();
        self.child.wait().unwrap()
    }
}

impl Drop for Hotline {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `signal` (`-STOP`, `-CONT`, ...) to process `pid`: whether it was there to take it.
pub fn signal(signal: &str, pid: u32) -> bool {
    Command::new("kill").args([signal, &pid.to_string()]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Runs `scripts/broker.sh COMMAND DIR` and returns what it printed (a bootstrap address).
pub fn broker_script(command: &str, dir: &Path) -> String {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/broker.sh"))
        .args([command, dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "broker.sh {command} {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The whole response to a plain HTTP GET (HTTP/1.0: never chunked), from a synchronous
/// context; empty when nothing answers.
pub fn http_get(listen: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut answer = String::new();
    if let Ok(mut stream) = std::net::TcpStream::connect(listen) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: {listen}\r\n\r\n");
        let _ = stream.read_to_string(&mut answer);
    }
    answer
}

/// CPU time used and peak resident memory of a process, from /proc.
#[derive(Default)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
}

impl ProcessSample {
    pub fn of(pid: u32) -> ProcessSample {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
        let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let peak_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        // Clock ticks are 100 per second on Linux.
        ProcessSample { cpu_seconds: ticks / 100.0, peak_rss_bytes: peak_kb * 1024 }
    }
}
