//! A private `redis-server` for `apex up`, on a free port with its files under the
//! data directory, stopped when `apex up` stops.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the private Redis could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis-server is not installed: install it (Debian/Ubuntu: `apt-get install redis-server`, macOS: `brew install redis`) or point REDIS_URL at a running Redis")]
    NotInstalled,
    #[error("redis-server did not start: {reason}{said}\n(its log: {log})")]
    Failed {
        reason: String,
        /// The end of what redis-server itself wrote, when it wrote anything.
        said: String,
        log: String,
    },
}

/// A `redis-server` process this `apex up` owns.
pub struct PrivateRedis {
    child: Child,
    port: u16,
    /// Required by the server: anything else on this machine that finds the port still
    /// cannot read or forge queue entries.
    password: String,
}

/// The last lines of what redis-server wrote to its log and its stderr.
fn tail(dir: &Path) -> String {
    let mut lines: Vec<String> = ["redis.stderr", "redis.log"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .flat_map(|s| s.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let keep = lines.len().saturating_sub(5);
    lines.drain(..keep);
    if lines.is_empty() {
        String::new()
    } else {
        format!("; it said:\n  {}", lines.join("\n  "))
    }
}

impl PrivateRedis {
    /// Starts `redis-server` on a free loopback port with its files in `dir`, which
    /// must be absolute (redis-server changes into it before opening its log).
    pub fn start(dir: &Path) -> Result<Self, RedisError> {
        debug_assert!(dir.is_absolute());
        let log = dir.join("redis.log");
        let failed = |reason: String| RedisError::Failed {
            reason,
            said: tail(dir),
            log: log.display().to_string(),
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| failed(format!("no free port: {e}")))?;
        let password = super::data_dir::new_token();
        // The password goes in a file only we can read, not on the command line (`ps`).
        let conf = dir.join("redis.conf");
        let _ = std::fs::remove_file(&conf);
        super::data_dir::write_private(
            &conf,
            &format!("requirepass {password}\nprotected-mode yes\n"),
        )
        .map_err(|e| failed(format!("cannot write {}: {e}", conf.display())))?;
        let stderr = std::fs::File::create(dir.join("redis.stderr"))
            .map_err(|e| failed(format!("cannot write into {}: {e}", dir.display())))?;
        let child = Command::new("redis-server")
            .arg(&conf)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => RedisError::NotInstalled,
                _ => failed(e.to_string()),
            })?;
        let mut redis = Self {
            child,
            port,
            password,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = redis.child.try_wait() {
                return Err(failed(format!("it exited with {status}")));
            }
            if Instant::now() > deadline {
                redis.stop();
                return Err(failed("it did not listen within 10 s".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(redis)
    }

    /// The URL to reach it, password included: hand it to children in the environment,
    /// never on a command line.
    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}", self.password, self.port)
    }

    /// Stops the server and waits for it to exit.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
