//! Private throwaway PostgreSQL clusters (initdb + pg_ctl on a free port), for
//! the tests that must stop a database or load an extension.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use uuid::Uuid;

use crate::helpers::free_port;

/// A PostgreSQL cluster in a temporary folder, stopped and removed on drop.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

impl Cluster {
    /// Creates and starts a cluster with `settings` appended to its postgresql.conf.
    pub fn start(bin: PathBuf, settings: &str) -> Self {
        let cluster = Self::unstarted(bin);
        let init = as_postgres(
            &cluster.bin.join("initdb"),
            &[
                "-D",
                path(&cluster.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let conf = cluster.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("reads postgresql.conf");
        text.push_str(&format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\nfsync = off\n{settings}",
            port = cluster.port,
            dir = path(&cluster.data)
        ));
        std::fs::write(&conf, text).expect("writes postgresql.conf");
        cluster.resume();
        cluster
    }

    /// A cluster not created yet: a free port, and an empty data folder the
    /// server's user owns (mode 700, as the server demands).
    fn unstarted(bin: PathBuf) -> Self {
        let port = free_port();
        let data = std::env::temp_dir().join(format!("presence-pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data).expect("creates the folder");
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod 700");
        if running_as_root() {
            let chown = Command::new("chown")
                .args(["postgres:postgres", path(&data)])
                .status()
                .expect("chown runs");
            assert!(chown.success());
        }
        Self { bin, data, port }
    }

    /// A streaming standby of `primary` (`pg_basebackup -R`), started.
    pub fn standby_of(primary: &Self) -> Self {
        let standby = Self::unstarted(primary.bin.clone());
        let backup = as_postgres(
            &standby.bin.join("pg_basebackup"),
            &[
                "-D",
                path(&standby.data),
                "-R",
                "-X",
                "stream",
                // A fast checkpoint: a spread one takes minutes on an idle server.
                "-c",
                "fast",
                "--no-sync",
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
            ],
        );
        assert!(
            backup.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&backup.stderr)
        );
        // The copied configuration names the primary's port and folder: later lines win.
        let conf = standby.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("reads postgresql.conf");
        text.push_str(&format!(
            "\nport = {port}\nunix_socket_directories = '{dir}'\n",
            port = standby.port,
            dir = path(&standby.data)
        ));
        std::fs::write(&conf, text).expect("writes postgresql.conf");
        standby.resume();
        standby
    }

    /// Promotes this standby to a primary, waiting until it accepts writes.
    pub fn promote(&self) {
        let promote = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", path(&self.data), "-w", "promote"],
        );
        assert!(
            promote.status.success(),
            "pg_ctl promote: {}",
            String::from_utf8_lossy(&promote.stderr)
        );
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server at once, as a crash or a failover would.
    pub fn halt(&self) {
        let stop = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", path(&self.data), "-m", "immediate", "-w", "stop"],
        );
        assert!(
            stop.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&stop.stderr)
        );
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn resume(&self) {
        let log = self.data.join("server.log");
        let start = as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                path(&self.data),
                "-l",
                path(&log),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            start.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&start.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

impl Cluster {
    /// Stops every process of the server (SIGSTOP) without closing a connection,
    /// as a hung or partitioned database looks; it thaws when the guard drops.
    pub fn freeze(&self) -> Frozen {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .expect("reads postmaster.pid");
        let postmaster = pid_file
            .lines()
            .next()
            .expect("the pid line")
            .trim()
            .to_owned();
        let children = Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .expect("pgrep runs");
        let mut pids = vec![postmaster];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .split_whitespace()
                .map(str::to_owned),
        );
        signal("-STOP", &pids);
        Frozen { pids }
    }
}

/// A frozen cluster's processes; dropping it sends SIGCONT.
pub struct Frozen {
    pids: Vec<String>,
}

impl Frozen {
    /// Lets the server's processes run again.
    pub fn thaw(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("-CONT", &self.pids);
    }
}

fn signal(which: &str, pids: &[String]) {
    let status = Command::new("kill")
        .arg(which)
        .args(pids)
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {which} {pids:?}");
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", path(&self.data), "-m", "immediate", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// The bin folder of the newest installed PostgreSQL server.
pub fn newest_server() -> Result<PathBuf, String> {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "no PostgreSQL server under /usr/lib/postgresql".to_owned())?;
    let newest = versions
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .ok_or("no PostgreSQL server version found")?;
    Ok(PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin")))
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
}

/// Runs a server program as the `postgres` user when we are root (initdb refuses root).
fn as_postgres(program: &Path, args: &[&str]) -> Output {
    let mut command = if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the program runs")
}

/// The ports private clusters and test servers listen on are ones no outgoing
/// connection can hold, and each is handed out once: a cluster stopped and
/// started again, or started after a slow initdb, finds its port free.
#[test]
fn test_servers_get_ports_outside_the_ones_connections_take() {
    let (_, ephemeral_low) = crate::helpers::below_ephemeral_ports();
    let ports: Vec<u16> = (0..64).map(|_| free_port()).collect();
    let inside: Vec<&u16> = ports
        .iter()
        .filter(|&&port| port >= ephemeral_low)
        .collect();
    assert!(
        inside.is_empty(),
        "ports from {ephemeral_low} up are the kernel's for outgoing connections: {inside:?}"
    );
    let distinct: std::collections::HashSet<&u16> = ports.iter().collect();
    assert_eq!(
        distinct.len(),
        ports.len(),
        "a port handed out twice: {ports:?}"
    );
}
