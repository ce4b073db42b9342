//! `nethouse serve` as a child process, for tests, benches and the demo: spawned with
//! `--ready-file`, then waited for until it writes its address there. Standard library only, so
//! crates that cannot depend on this one include it by `#[path]` (the service bench, the e2e
//! demo).

use std::ffi::OsStr;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How to run `nethouse serve`: the flags after `serve` (`--ready-file` is added here), where
/// its stderr goes, how long it may take to start.
pub struct Serve {
    cmd: Command,
    ready_file: PathBuf,
    log: Option<PathBuf>,
    within: Duration,
}

/// A server that wrote its ready file.
pub struct Served {
    pub child: Child,
    /// What it listens on, as written to the ready file.
    pub addr: SocketAddr,
    /// From spawn to the ready file.
    pub took: Duration,
}

#[derive(Debug)]
pub enum ServeError {
    /// The log file could not be opened.
    Log(PathBuf, io::Error),
    Spawn(PathBuf, io::Error),
    Exited {
        status: ExitStatus,
        log: String,
    },
    NotReady {
        within: Duration,
        log: String,
    },
    ReadyFile {
        path: PathBuf,
        text: String,
    },
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Log(path, e) => write!(f, "opening the log {}: {e}", path.display()),
            ServeError::Spawn(bin, e) => write!(f, "spawning {} serve: {e}", bin.display()),
            ServeError::Exited { status, log } => {
                write!(
                    f,
                    "nethouse serve exited with {status} before it was ready: {log}"
                )
            }
            ServeError::NotReady { within, log } => {
                write!(f, "nethouse serve not ready within {within:?}: {log}")
            }
            ServeError::ReadyFile { path, text } => {
                write!(f, "{} holds {text:?}, not an address", path.display())
            }
        }
    }
}

impl std::error::Error for ServeError {}

impl Serve {
    /// `bin serve ... --ready-file ready_file`; stderr inherited, 30 s to start.
    pub fn new(bin: impl AsRef<Path>, ready_file: impl Into<PathBuf>) -> Serve {
        let mut cmd = Command::new(bin.as_ref());
        cmd.arg("serve");
        Serve {
            cmd,
            ready_file: ready_file.into(),
            log: None,
            within: Duration::from_secs(30),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Serve {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Serve
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Serve {
        self.cmd.env(key, value);
        self
    }

    /// Appends stderr to `path`, which a failure to start then quotes.
    pub fn log(mut self, path: impl Into<PathBuf>) -> Serve {
        self.log = Some(path.into());
        self
    }

    pub fn within(mut self, deadline: Duration) -> Serve {
        self.within = deadline;
        self
    }

    /// Spawns it and waits for the ready file; a server that exits first, or is not ready in
    /// time (then it is killed), is an error quoting its log.
    pub fn spawn(mut self) -> Result<Served, ServeError> {
        // A file left by an earlier run in the same directory would pass for this one's.
        let _ = std::fs::remove_file(&self.ready_file);
        let stderr = match &self.log {
            Some(path) => OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .map_err(|e| ServeError::Log(path.clone(), e))?,
            None => Stdio::inherit(),
        };
        let started = Instant::now();
        let mut child = self
            .cmd
            .arg("--ready-file")
            .arg(&self.ready_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| ServeError::Spawn(PathBuf::from(self.cmd.get_program()), e))?;
        loop {
            // The server writes a temporary file and renames it: once there, it is whole.
            if let Ok(text) = std::fs::read_to_string(&self.ready_file) {
                let took = started.elapsed();
                return match text.trim().parse() {
                    Ok(addr) => Ok(Served { child, addr, took }),
                    Err(_) => {
                        stop(&mut child);
                        Err(ServeError::ReadyFile {
                            path: self.ready_file,
                            text,
                        })
                    }
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(ServeError::Exited {
                    status,
                    log: self.log_text(),
                });
            }
            if started.elapsed() > self.within {
                stop(&mut child);
                return Err(ServeError::NotReady {
                    within: self.within,
                    log: self.log_text(),
                });
            }
            // Short: the bench times start-up by this loop.
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn log_text(&self) -> String {
        match &self.log {
            Some(path) => std::fs::read_to_string(path)
                .unwrap_or_else(|e| format!("(its log {}: {e})", path.display())),
            None => "(its log is this process's stderr)".to_string(),
        }
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
