//! Detached service processes: spawn into their own process group with output to a log file,
//! remember them in a pid file guarded by the process start time (so a recycled pid is never
//! mistaken for ours), and stop the whole group.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{Pid, Uid};

/// What to run for one service.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// Run under this system user (PostgreSQL refuses to run as root).
    pub user: Option<String>,
}

impl Launch {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Launch { program: program.into(), args: Vec::new(), env: Vec::new(), cwd: None, user: None }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn command(&self) -> io::Result<Command> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).envs(self.env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null());
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        if let Some(user) = &self.user {
            if Uid::effective().is_root() {
                let (uid, gid) = system_user(user)?;
                cmd.uid(uid).gid(gid);
            }
        }
        Ok(cmd)
    }

    /// Runs to completion (set-up steps such as `initdb`), output appended to `log`.
    pub fn run_to_end(&self, log: &Path) -> io::Result<std::process::ExitStatus> {
        let out = open_log(log)?;
        self.command()?.stdout(out.try_clone()?).stderr(out).status()
    }

    /// Starts detached in a new process group; returns its pid record.
    pub fn spawn_detached(&self, log: &Path) -> io::Result<ProcessRecord> {
        let out = open_log(log)?;
        let child = self.command()?.stdout(out.try_clone()?).stderr(out).process_group(0).spawn()?;
        let pid = child.id() as i32;
        // The Child handle is dropped on purpose: the process outlives this CLI invocation.
        drop(child);
        let start_time = start_time(pid).ok_or_else(|| io::Error::other(format!("process {pid} exited at once")))?;
        Ok(ProcessRecord { pid, start_time })
    }
}

/// uid and gid of a system user, from /etc/passwd.
pub fn system_user(name: &str) -> io::Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name) && f.len() > 3)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("system user `{name}` does not exist")))
}

fn open_log(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// A process we started: its pid and its kernel start time (clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRecord {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessRecord {
    pub fn read(pid_file: &Path) -> Option<ProcessRecord> {
        let text = fs::read_to_string(pid_file).ok()?;
        let mut parts = text.split_whitespace();
        Some(ProcessRecord { pid: parts.next()?.parse().ok()?, start_time: parts.next()?.parse().ok()? })
    }

    pub fn write(&self, pid_file: &Path) -> io::Result<()> {
        if let Some(dir) = pid_file.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(pid_file, format!("{} {}\n", self.pid, self.start_time))
    }

    /// True while the very process we started runs (not a zombie, not a recycled pid).
    pub fn is_alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }

    /// SIGTERM to the process group, then SIGKILL after `grace`. Returns once it is gone.
    pub fn stop(&self, grace: Duration) -> io::Result<()> {
        // The leader may be gone while children of its group (e.g. executors) still run.
        if !self.is_alive() && !group_has_members(self.pid) {
            return Ok(());
        }
        let group = Pid::from_raw(self.pid);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while self.is_alive() && Instant::now() < deadline {
            reap(self.pid);
            std::thread::sleep(Duration::from_millis(200));
        }
        if self.is_alive() {
            tracing::warn!(pid = self.pid, "did not stop within {grace:?}: SIGKILL");
            let _ = killpg(group, Signal::SIGKILL);
            while self.is_alive() {
                reap(self.pid);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // Children left in the group (e.g. Spark executors) get the same treatment, and stop
        // returns only once no process of the group is left.
        let _ = killpg(group, Signal::SIGKILL);
        reap(self.pid);
        let deadline = Instant::now() + grace;
        while group_has_members(self.pid) {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!("process group {} still has members after SIGKILL", self.pid)));
            }
            reap(self.pid);
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

/// Collects the exit status if the process is our child (avoids zombies in long-lived callers).
fn reap(pid: i32) {
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

/// The start time of a live (non-zombie) process, from /proc/PID/stat.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is the state (field 3 of the file); starttime is field 22.
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Resident set size of a process and its descendants in the same group, in KiB.
pub fn group_rss_kib(pgid: i32) -> u64 {
    let Ok(entries) = fs::read_dir("/proc") else { return 0 };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| process_group_of(*pid) == Some(pgid))
        .filter_map(|pid| {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

/// True while a (non-zombie) process of the group `pgid` exists.
fn group_has_members(pgid: i32) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else { return false };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .any(|pid| process_group_of(pid) == Some(pgid) && start_time(pid).is_some())
}

fn process_group_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// True when nothing listens on 127.0.0.1:`port` (a bind attempt succeeds).
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Waits up to `grace` for `port` to be free; false if it is still taken then.
pub async fn wait_port_free(port: u16, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    loop {
        if port_is_free(port) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The last `n` lines of a log file (empty if it does not exist).
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut file) = File::open(path) else { return Vec::new() };
    // Read at most the last 256 KiB: enough for n lines, cheap on big logs.
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(256 * 1024)));
    let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_track_and_stop_a_process_group() {
        let dir = std::env::temp_dir().join(format!("pipeline-proc-{}", std::process::id()));
        let log = dir.join("sleep.log");
        let pid_file = dir.join("sleep.pid");
        // A shell with a child: stopping must take down the whole group.
        let record =
            Launch::new("/bin/sh").args(["-c", "echo started; sleep 30 & wait"]).spawn_detached(&log).expect("spawn");
        record.write(&pid_file).expect("pid file");
        assert_eq!(ProcessRecord::read(&pid_file), Some(record));
        assert!(record.is_alive());
        record.stop(Duration::from_secs(5)).expect("stop");
        assert!(!record.is_alive());
        // A record with a wrong start time is never treated as ours.
        assert!(!ProcessRecord { pid: std::process::id() as i32, start_time: 1 }.is_alive());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn port_probe_sees_a_listener() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(!port_is_free(port));
        drop(listener);
        assert!(port_is_free(port));
    }

    #[test]
    fn tail_returns_last_lines() {
        let path = std::env::temp_dir().join(format!("pipeline-tail-{}.log", std::process::id()));
        fs::write(&path, (1..=100).map(|i| format!("line {i}\n")).collect::<String>()).expect("write");
        assert_eq!(tail(&path, 2), vec!["line 99".to_string(), "line 100".to_string()]);
        let _ = fs::remove_file(path);
    }
}
