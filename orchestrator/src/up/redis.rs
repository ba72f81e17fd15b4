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
    #[error("redis-server did not start: {0} (see {1})")]
    Failed(String, String),
}

/// A `redis-server` process this `apex up` owns.
pub struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    /// Starts `redis-server` on a free loopback port with its files in `dir`.
    pub fn start(dir: &Path) -> Result<Self, RedisError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| RedisError::Failed(e.to_string(), dir.display().to_string()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| RedisError::Failed(e.to_string(), "a free port".into()))?;
        let log = dir.join("redis.log");
        let child = Command::new("redis-server")
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
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => RedisError::NotInstalled,
                _ => RedisError::Failed(e.to_string(), log.display().to_string()),
            })?;
        let mut redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = redis.child.try_wait() {
                return Err(RedisError::Failed(
                    format!("it exited with {status}"),
                    log.display().to_string(),
                ));
            }
            if Instant::now() > deadline {
                redis.stop();
                return Err(RedisError::Failed(
                    "it did not listen within 10 s".into(),
                    log.display().to_string(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
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
