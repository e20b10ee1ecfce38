//! The README's "A three-machine network by hand", followed step by step on this one machine:
//! three folders stand for machines A (the orderer organization's three orderers), B (the
//! DSO's peer) and C (the retailer's peer). Every file the section writes with `cat > FILE
//! <<'EOF'` is taken from the README itself — C's from B's with the substitution the README
//! names — with the section's host names and ports replaced by 127.0.0.1 and free ports (the
//! TLS certificates carry 127.0.0.1, and the clients keep checking the real server names where
//! network.json names them). The nodes run as `gridledger orderer|peer start` processes from
//! those configs and every command is a `gridledger` process run in its machine's folder, so
//! a README whose files or commands stopped working fails here. Files move between folders as
//! they would between machines: the MSP folders to A (checked to hold no private key), the
//! genesis block to B and C. It ends with a transaction endorsed by both peers, readable on
//! both, the same chain on both, and `/healthz` 200 on every node over mutual TLS.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{POLL, START_TIMEOUT, free_base_port, stderr, stdout};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const README: &str = include_str!("../../README.md");
/// The README section this test follows.
const SECTION: &str = "## A three-machine network by hand";

/// The contents of the file the section writes with `cat > NAME <<'EOF'`.
fn readme_file(name: &str) -> String {
    let section = README
        .split_once(SECTION)
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("README.md has no section {SECTION:?}"));
    let opening = format!("cat > {name} <<'EOF'\n");
    let (_, rest) = section
        .split_once(&opening)
        .unwrap_or_else(|| panic!("the README section writes no {name}"));
    let (body, _) = rest
        .split_once("\nEOF\n")
        .unwrap_or_else(|| panic!("{name} in the README has no closing EOF line"));
    format!("{body}\n")
}

/// `text` with each `(from, to)` replaced; every `from` must occur, so a README that changes
/// a name or port the test relies on fails here rather than silently.
fn localize(text: &str, replacements: &[(String, String)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in replacements {
        assert!(out.contains(from.as_str()), "{from:?} not found in:\n{out}");
        out = out.replace(from.as_str(), to);
    }
    out
}

/// What the README says turns B's files into C's.
fn for_retailer(text: &str) -> String {
    text.replace("DSOMSP", "RetailerMSP")
        .replace("dso", "retailer")
}

fn pair(from: impl Into<String>, to: impl Into<String>) -> (String, String) {
    (from.into(), to.into())
}

/// A folder standing for one machine.
struct Machine {
    name: &'static str,
    dir: PathBuf,
}

impl Machine {
    fn new(root: &Path, name: &'static str) -> Machine {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("logs")).expect("create the machine's folder");
        Machine { name, dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    fn write(&self, relative: &str, text: &str) {
        std::fs::write(self.path(relative), text)
            .unwrap_or_else(|e| panic!("write {relative} on {}: {e}", self.name));
    }

    /// `gridledger ARGS` in this machine's folder, to completion.
    fn try_run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gridledger"))
            .current_dir(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run gridledger")
    }

    /// `gridledger ARGS` in this machine's folder, which must succeed; its standard output.
    fn run(&self, args: &[&str]) -> String {
        let out = self.try_run(args);
        assert!(
            out.status.success(),
            "on {}: gridledger {args:?} failed:\n{}{}",
            self.name,
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }
}

/// Polls `probe` until it gives a value; fails with `what` after [`START_TIMEOUT`].
fn eventually<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) => {
                assert!(Instant::now() < deadline, "{what}; last: {last}");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// The nodes the test started and the folder of the three machines: on drop every node stops
/// (its standard input closes); on failure the logs' tails are printed and the folder kept.
struct Nodes {
    root: PathBuf,
    children: Vec<Child>,
}

impl Nodes {
    /// `gridledger KIND start --config CONFIG` in `machine`'s folder; waits until it serves on
    /// `port`.
    fn start(&mut self, machine: &Machine, kind: &str, config: &str, port: u16) {
        let log_path = machine.path(&format!("logs/{config}.log"));
        let log = std::fs::File::create(&log_path).expect("create a log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_gridledger"))
            .current_dir(&machine.dir)
            .args([kind, "start", "--config", config, "--exit-on-stdin-close"])
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {config} on {}: {e}", machine.name));
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{config} on {} exited during start-up ({status}):\n{}",
                    machine.name,
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{config} did not serve on {port}"
            );
            std::thread::sleep(POLL);
        }
        self.children.push(child);
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.children {
            drop(child.stdin.take());
        }
        for mut child in self.children.drain(..) {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(POLL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for machine in ["A", "B", "C"] {
                let logs = self.root.join(machine).join("logs");
                let Ok(entries) = std::fs::read_dir(&logs) else {
                    continue;
                };
                for entry in entries.filter_map(Result::ok) {
                    let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    eprintln!("----- {machine}: {}", entry.file_name().to_string_lossy());
                    for line in &lines[lines.len().saturating_sub(30)..] {
                        eprintln!("{line}");
                    }
                }
            }
            eprintln!("[test] folder kept: {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Copies a folder as an operator would move it to another machine, after checking it holds
/// public material only.
fn copy_public_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the destination");
    for entry in std::fs::read_dir(from).expect("read the folder") {
        let entry = entry.expect("a folder entry");
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            name != "keystore" && !name.ends_with(".key"),
            "{} would move a private key",
            source.display()
        );
        if source.is_dir() {
            copy_public_folder(&source, &target);
        } else {
            let bytes = std::fs::read(&source).expect("read a file");
            assert!(
                !String::from_utf8_lossy(&bytes).contains("PRIVATE KEY"),
                "{} holds a private key",
                source.display()
            );
            std::fs::write(&target, bytes).expect("write a file");
        }
    }
}

/// One HTTPS GET of `path` at `address` (HOST:PORT; HOST is the server name checked),
/// trusting `ca`, presenting the client certificate and key `client` when given: the whole
/// answer, or why the exchange failed.
fn https_get(
    address: &str,
    path: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<String, String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| text(&e))? {
        roots
            .add(cert.map_err(|e| text(&e))?)
            .map_err(|e| text(&e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| text(&e))?
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| text(&e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| text(&e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| text(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| text(&e))?
        }
        None => builder.with_no_client_auth(),
    };
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let name = ServerName::try_from(host.to_owned()).map_err(|e| text(&e))?;
    let connection = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| text(&e))?;
    let tcp = TcpStream::connect(address).map_err(|e| text(&e))?;
    tcp.set_read_timeout(Some(START_TIMEOUT))
        .map_err(|e| text(&e))?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| text(&e))?;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        // A server that closes without TLS close_notify has still sent its whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(text(&e)),
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn the_readme_walkthrough_runs_a_channel_across_three_machines() {
    let root = std::env::temp_dir().join(format!("gridledger-walkthrough-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (a, b, c) = (
        Machine::new(&root, "A"),
        Machine::new(&root, "B"),
        Machine::new(&root, "C"),
    );
    let mut nodes = Nodes {
        root: root.clone(),
        children: Vec::new(),
    };
    let base = free_base_port(10);
    let local = |port: u16| format!("127.0.0.1:{port}");
    // The README's ports on their machines, and the ones used here.
    let orderer_ports = [base, base + 1, base + 2];
    let orderer_ops = [base + 3, base + 4, base + 5];
    let (dso_port, dso_ops, retailer_port, retailer_ops) = (base + 6, base + 7, base + 8, base + 9);

    // 1. Crypto material, each organization on its own machine.
    a.write("orderer-crypto.toml", &readme_file("orderer-crypto.toml"));
    a.run(&[
        "crypto",
        "generate",
        "--config",
        "orderer-crypto.toml",
        "--out",
        "crypto",
    ]);
    let dso_crypto = readme_file("dso-crypto.toml");
    b.write("dso-crypto.toml", &dso_crypto);
    b.run(&[
        "crypto",
        "generate",
        "--config",
        "dso-crypto.toml",
        "--out",
        "crypto",
    ]);
    c.write("retailer-crypto.toml", &for_retailer(&dso_crypto));
    c.run(&[
        "crypto",
        "generate",
        "--config",
        "retailer-crypto.toml",
        "--out",
        "crypto",
    ]);

    // 2. The members' MSP folders go to A: certificates only.
    for (machine, msp) in [(&b, "DSOMSP"), (&c, "RetailerMSP")] {
        copy_public_folder(
            &machine.path(&format!("crypto/organizations/{msp}/msp")),
            &a.path(&format!("orgs/{msp}/msp")),
        );
    }

    // 3. The three orderers on A, from orderer0.toml as the README derives the others.
    let orderer0 = readme_file("orderer0.toml");
    for i in 0..3u16 {
        let text = orderer0
            .replace("orderer0", &format!("orderer{i}"))
            .replace(":7050", &format!(":{}", 7050 + i))
            .replace(":8443", &format!(":{}", 8443 + i));
        let text = localize(
            &text,
            &[
                pair(
                    format!("0.0.0.0:{}", 7050 + i),
                    local(orderer_ports[usize::from(i)]),
                ),
                pair(
                    format!("0.0.0.0:{}", 8443 + i),
                    local(orderer_ops[usize::from(i)]),
                ),
            ],
        );
        let file = format!("orderer{i}.toml");
        a.write(&file, &text);
        nodes.start(&a, "orderer", &file, orderer_ports[usize::from(i)]);
    }

    // 4. The peers on B and C, with no channel yet, and each organization's network.json.
    let peer = readme_file("peer.toml");
    let network = readme_file("network.json");
    for (machine, port, ops, host, convert) in [
        (
            &b,
            dso_port,
            dso_ops,
            "peer0.dso.grid.example",
            (|t: &str| t.to_owned()) as fn(&str) -> String,
        ),
        (
            &c,
            retailer_port,
            retailer_ops,
            "peer0.retailer.grid.example",
            for_retailer,
        ),
    ] {
        let text = localize(
            &convert(&peer),
            &[
                pair("0.0.0.0:7051", local(port)),
                pair(format!("\"{host}:7051\""), format!("\"{}\"", local(port))),
                pair("0.0.0.0:9443", local(ops)),
            ],
        );
        machine.write("peer.toml", &text);
        nodes.start(machine, "peer", "peer.toml", port);
        // The endpoint moves to 127.0.0.1; the server name checked stays the peer's name.
        let text = localize(
            &convert(&network),
            &[pair(
                format!("\"endpoint\": \"{host}:7051\""),
                format!("\"endpoint\": \"{}\"", local(port)),
            )],
        );
        assert!(
            text.contains(&format!("\"serverName\": \"{host}\"")),
            "{text}"
        );
        machine.write("network.json", &text);
    }

    // 5. The channel on A: genesis block, then the running orderers join it through the
    //    participation API over mutual TLS.
    let mut replacements = Vec::new();
    for i in 0..3u16 {
        let port = orderer_ports[usize::from(i)];
        replacements.push(pair(
            format!("\"orderer{i}.grid.example:{}\"", 7050 + i),
            format!("\"{}\"", local(port)),
        ));
        replacements.push(pair(
            format!("host = \"orderer{i}.grid.example\"\nport = {}\n", 7050 + i),
            format!("host = \"127.0.0.1\"\nport = {port}\n"),
        ));
    }
    replacements.push(pair(
        "\"peer0.dso.grid.example:7051\"",
        format!("\"{}\"", local(dso_port)),
    ));
    replacements.push(pair(
        "\"peer0.retailer.grid.example:7051\"",
        format!("\"{}\"", local(retailer_port)),
    ));
    a.write(
        "grid.toml",
        &localize(&readme_file("grid.toml"), &replacements),
    );
    a.run(&[
        "channel",
        "genesis",
        "--config",
        "grid.toml",
        "--out",
        "grid.block",
    ]);
    let admin_tls = [
        "--ca-file",
        "crypto/organizations/OrdererMSP/tlsca/tlsca.pem",
        "--client-cert",
        "crypto/organizations/OrdererMSP/users/Admin/tls/client.crt",
        "--client-key",
        "crypto/organizations/OrdererMSP/users/Admin/tls/client.key",
    ];
    let ops: Vec<String> = orderer_ops.iter().map(|&p| local(p)).collect();
    let mut create = vec![
        "channel",
        "create",
        "--channel",
        "grid",
        "--block",
        "grid.block",
    ];
    for address in &ops {
        create.extend(["--orderer-admin", address.as_str()]);
    }
    create.extend(admin_tls);
    let created = a.run(&create);
    assert!(
        created.contains("channel 'grid' created on 3 orderer(s)"),
        "{created}"
    );
    let mut list = vec!["channel", "list", "--orderer-admin", ops[0].as_str()];
    list.extend(admin_tls);
    let listed = a.run(&list);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("grid\tconsenter\tactive\theight ")),
        "{listed}"
    );
    let block = std::fs::read(a.path("grid.block")).expect("read grid.block");
    for machine in [&b, &c] {
        std::fs::write(machine.path("grid.block"), &block).expect("copy grid.block");
    }

    // 6. Each organization's admin joins its running peer.
    for (machine, org) in [(&b, "DSOMSP"), (&c, "RetailerMSP")] {
        let joined = machine.run(&[
            "channel",
            "join",
            "--block",
            "grid.block",
            "--network",
            "network.json",
            "--org",
            org,
        ]);
        assert!(joined.contains("joined channel 'grid'"), "{joined}");
        let listed = machine.run(&["channel", "list", "--network", "network.json", "--org", org]);
        assert_eq!(
            listed.lines().skip(1).collect::<Vec<_>>(),
            ["grid"],
            "{listed}"
        );
    }

    // 7. `basic`: packaged, installed and approved by each organization; committed from B.
    let definition = [
        "--channel",
        "grid",
        "--name",
        "basic",
        "--version",
        "1.0",
        "--sequence",
        "1",
    ];
    for (machine, org) in [(&b, "DSOMSP"), (&c, "RetailerMSP")] {
        let package_id = machine.run(&[
            "chaincode",
            "package",
            "--builtin",
            "basic",
            "--label",
            "basic_1.0",
            "-o",
            "basic.tar.gz",
        ]);
        let package_id = package_id.trim();
        assert!(package_id.starts_with("basic_1.0:"), "{package_id}");
        let installed = machine.run(&[
            "chaincode",
            "install",
            "--network",
            "network.json",
            "--org",
            org,
            "basic.tar.gz",
        ]);
        assert_eq!(installed.trim(), package_id);
        let mut approve = vec![
            "chaincode",
            "approve",
            "--network",
            "network.json",
            "--org",
            org,
        ];
        approve.extend(definition);
        approve.extend(["--package-id", package_id]);
        machine.run(&approve);
    }
    let mut readiness = vec![
        "chaincode",
        "checkcommitreadiness",
        "--network",
        "network.json",
        "--org",
        "DSOMSP",
    ];
    readiness.extend(definition);
    eventually("B's peer never saw both approvals", || {
        let shown = b.run(&readiness);
        if shown.contains("DSOMSP: true") && shown.contains("RetailerMSP: true") {
            Ok(())
        } else {
            Err(shown)
        }
    });
    let mut commit = vec![
        "chaincode",
        "commit",
        "--network",
        "network.json",
        "--org",
        "DSOMSP",
    ];
    commit.extend(definition);
    let committed = b.run(&commit);
    assert!(
        committed.contains("committed basic sequence 1 on grid"),
        "{committed}"
    );
    eventually("C's peer never committed the definition", || {
        let out = c.try_run(&[
            "chaincode",
            "querycommitted",
            "--network",
            "network.json",
            "--org",
            "RetailerMSP",
            "--channel",
            "grid",
            "--name",
            "basic",
        ]);
        let shown = stdout(&out);
        if out.status.success() && shown.contains("Version: 1.0, Sequence: 1") {
            Ok(())
        } else {
            Err(format!("{shown}{}", stderr(&out)))
        }
    });

    // 8. A first transaction from B, endorsed by both peers; readable on both, the same chain
    //    on both, and every node healthy.
    let invoked = b.run(&[
        "chaincode",
        "invoke",
        "--network",
        "network.json",
        "--org",
        "DSOMSP",
        "--channel",
        "grid",
        "--name",
        "basic",
        "CreateAsset",
        "asset1",
        "blue",
        "5",
        "Tom",
        "100",
    ]);
    assert!(
        invoked.starts_with("transaction ") && invoked.contains(" committed in block "),
        "{invoked}"
    );
    for (machine, org) in [(&b, "DSOMSP"), (&c, "RetailerMSP")] {
        let asset = eventually(&format!("{org}'s peer never showed asset1"), || {
            let out = machine.try_run(&[
                "chaincode",
                "query",
                "--network",
                "network.json",
                "--org",
                org,
                "--channel",
                "grid",
                "--name",
                "basic",
                "ReadAsset",
                "asset1",
            ]);
            if out.status.success() {
                Ok(stdout(&out))
            } else {
                Err(stderr(&out))
            }
        });
        let asset: serde_json::Value = serde_json::from_str(&asset).expect("the asset as JSON");
        assert_eq!(asset["ID"], "asset1", "{asset}");
        assert_eq!(asset["Owner"], "Tom", "{asset}");
    }
    let info = |machine: &Machine, org: &str| {
        machine.run(&[
            "channel",
            "info",
            "--network",
            "network.json",
            "--channel",
            "grid",
            "--org",
            org,
        ])
    };
    let on_b = eventually("the peers never agreed on the chain", || {
        let (on_b, on_c) = (info(&b, "DSOMSP"), info(&c, "RetailerMSP"));
        if on_b == on_c {
            Ok(on_b)
        } else {
            Err(format!("B:\n{on_b}C:\n{on_c}"))
        }
    });
    // Genesis, two approvals, the commit of the definition, the transaction.
    assert!(on_b.contains("height:              5\n"), "{on_b}");

    let healthy = "{\"status\":\"OK\"}";
    let orderer_tls = (
        a.path("crypto/organizations/OrdererMSP/tlsca/tlsca.pem"),
        a.path("crypto/organizations/OrdererMSP/users/Admin/tls/client.crt"),
        a.path("crypto/organizations/OrdererMSP/users/Admin/tls/client.key"),
    );
    let mut endpoints: Vec<(String, (PathBuf, PathBuf, PathBuf))> = ops
        .iter()
        .map(|address| (address.clone(), orderer_tls.clone()))
        .collect();
    for (machine, msp, port) in [(&b, "DSOMSP", dso_ops), (&c, "RetailerMSP", retailer_ops)] {
        let org = format!("crypto/organizations/{msp}");
        endpoints.push((
            local(port),
            (
                machine.path(&format!("{org}/tlsca/tlsca.pem")),
                machine.path(&format!("{org}/users/Admin/tls/client.crt")),
                machine.path(&format!("{org}/users/Admin/tls/client.key")),
            ),
        ));
    }
    for (address, (ca, cert, key)) in &endpoints {
        let answer =
            eventually(
                &format!("{address} never answered /healthz 200"),
                || match https_get(address, "/healthz", ca, Some((cert, key))) {
                    Ok(answer) if answer.starts_with("HTTP/1.1 200 ") => Ok(answer),
                    Ok(answer) => Err(answer),
                    Err(e) => Err(e),
                },
            );
        assert!(answer.contains(healthy), "{address}: {answer}");
        // The endpoint wants a client certificate of the organization's TLS CA.
        let anonymous = https_get(address, "/healthz", ca, None);
        assert!(
            !anonymous.as_ref().is_ok_and(|a| a.contains(" 200 ")),
            "{address} answered a client without a certificate: {anonymous:?}"
        );
    }
}
