//! `gridledger up --dir DIR`: a complete local consortium in one process tree.
//!
//! Creates the crypto material (once: the organizations' nodes, admins, users, 32 prosumers per
//! market organization and a DSO meter per prosumer), the genesis blocks of `market` (every
//! organization) and of the bilateral meter channels `meter-retailer` and `meter-community`
//! (that organization and the DSO), one config file per node, then starts the three Raft
//! orderers (orderer0..2, every channel's consenters) and one peer each for DSOMSP, RetailerMSP
//! and CommunityMSP as separate processes, waits until every node serves, and defines the
//! chaincodes through the lifecycle as the organizations' admins would (`gridledger chaincode
//! deploy`): on `market` the builtin `basic` (and a chaincode-as-a-service package per
//! `--external-chaincode`) and the DSO-certified `energy`, `certs` and `flex`; on each meter
//! channel `meter` with its private `readings` collection. Each market organization's admin then
//! registers its meter channel in `energy`. Last it writes `DIR/network.json` (DESIGN.md's
//! shape), so a client that sees the file can use the chaincodes at once. Running it again on
//! the same DIR restarts the same network with its ledgers; a chaincode whose committed
//! definition is already current is left alone, one whose server address changed is upgraded
//! (a network created before clusters keeps its single orderer).
//!
//! Ports: orderer0 on P, the peers on P+1..P+3, orderer1 and orderer2 on P+4 and P+5. Each
//! orderer serves Broadcast, Deliver and the cluster service (Raft) on its one port. Every node
//! also serves its operations endpoint (plain HTTP here: `/metrics`, `/healthz`, `/version`,
//! `/logspec`) on its port + [`OPERATIONS_PORT_OFFSET`], so P+10..P+15; `network.json` lists
//! it as each node's `operationsEndpoint`. Ctrl-C or
//! SIGTERM stops every node; the nodes also stop when `up` itself dies, because they watch the
//! standard input `up` holds open for them.

use anyhow::{Context, bail};
use gridledger_identity::material::{self, CryptoConfig};
use serde_json::json;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The consortium's identities (the same file as examples/crypto-config.toml).
const CRYPTO_CONFIG: &str = include_str!("../../examples/crypto-config.toml");
/// The chaincode deployed on `market` and its endorsement policy.
const CHAINCODE: &str = "basic";
const ENDORSEMENT_POLICY: &str = "OutOf(1, 'DSOMSP.peer', 'RetailerMSP.peer', 'CommunityMSP.peer')";
const CHANNEL: &str = "market";
/// The market chaincode: every trade needs the DSO peer's endorsement (its grid check) and a
/// market organization's.
const ENERGY_CHAINCODE: &str = "energy";
const ENERGY_POLICY: &str = "AND('DSOMSP.peer', OutOf(1, 'RetailerMSP.peer', 'CommunityMSP.peer'))";
/// The DSO-certified market chaincodes on `market`, all under [`ENERGY_POLICY`]: the market
/// itself, guarantees of origin and demand response.
const MARKET_CHAINCODES: [&str; 3] = [ENERGY_CHAINCODE, "certs", "flex"];
/// The DSO's feeder model and the load scale per 15-minute slot (its private configuration).
const FEEDER: &[u8] = include_bytes!("../../grid/feeders/ieee33.json");
const LOAD_PROFILE: &str = include_str!("../../grid/profiles/household-h25-winter.csv");
/// Prosumers per market organization. The crypto config names the first two of each (the
/// ones examples use, on chosen buses); `up` adds the rest, for load generators, each with a
/// meter.
const PROSUMERS_PER_ORG: usize = 32;
/// The market organizations: MSP id, the letter of their prosumers' names and PODs
/// (`Prosumer-R001`, `POD-R001`), and their bilateral meter channel with the DSO.
const MARKET_ORGS: [(&str, char, &str); 2] = [
    ("RetailerMSP", 'R', "meter-retailer"),
    ("CommunityMSP", 'C', "meter-community"),
];
/// The chaincode recording smart-meter readings on the bilateral channels.
const METER_CHAINCODE: &str = "meter";
/// A node's operations endpoint listens on its gRPC port plus this.
const OPERATIONS_PORT_OFFSET: u16 = 10;
/// How long a node may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The member organizations and their peers.
const PEERS: [(&str, &str); 3] = [
    ("DSOMSP", "peer0.dso"),
    ("RetailerMSP", "peer0.retailer"),
    ("CommunityMSP", "peer0.community"),
];

/// The feeder bus (IEEE 33-bus, 1..=32; 0 is the substation) of prosumer `n` of the market
/// organization with `letter`: the first two of each on chosen buses (far ends of laterals and
/// next to the substation), the rest spread along the feeder.
fn pod_bus(letter: char, n: usize) -> usize {
    match (letter, n) {
        ('R', 1) => 17,
        ('R', 2) => 1,
        ('C', 1) => 32,
        ('C', 2) => 24,
        ('R', n) => 1 + (n * 7) % 32,
        (_, n) => 1 + (n * 7 + 3) % 32,
    }
}

/// The consortium's identities: the built-in crypto config plus, per market organization, a
/// demand-response aggregator (`Aggregator-R`, attribute `aggregator=AGG-R`), prosumers up to
/// [`PROSUMERS_PER_ORG`] and one DSO meter per prosumer's POD.
fn crypto_config() -> anyhow::Result<CryptoConfig> {
    let mut config: CryptoConfig =
        toml::from_str(CRYPTO_CONFIG).context("parsing the built-in crypto config")?;
    let mut meters = Vec::new();
    for (msp_id, letter, _) in MARKET_ORGS {
        let org = config
            .organizations
            .iter_mut()
            .find(|o| o.msp_id == msp_id)
            .with_context(|| format!("the built-in crypto config has no {msp_id}"))?;
        // The organization's demand-response aggregator (flex's `aggregator` attribute).
        let aggregator = format!("Aggregator-{letter}");
        if !org.users.iter().any(|u| u.name == aggregator) {
            org.users.push(material::UserSpec {
                name: aggregator,
                attributes: [("aggregator".to_owned(), format!("AGG-{letter}"))].into(),
            });
        }
        for n in 1..=PROSUMERS_PER_ORG {
            let name = format!("Prosumer-{letter}{n:03}");
            if !org.users.iter().any(|u| u.name == name) {
                org.users.push(material::UserSpec {
                    name,
                    attributes: [("pod".to_owned(), format!("POD-{letter}{n:03}"))].into(),
                });
            }
            meters.push(material::UserSpec {
                name: format!("Meter-{letter}{n:03}"),
                attributes: [
                    ("meter".to_owned(), format!("M-{letter}{n:03}")),
                    ("pod".to_owned(), format!("POD-{letter}{n:03}")),
                ]
                .into(),
            });
        }
    }
    let dso = config
        .organizations
        .iter_mut()
        .find(|o| o.msp_id == "DSOMSP")
        .context("the built-in crypto config has no DSOMSP")?;
    for meter in meters {
        if !dso.users.iter().any(|u| u.name == meter.name) {
            dso.users.push(meter);
        }
    }
    Ok(config)
}

/// The channels `up` creates: `market` with every organization, and one bilateral meter channel
/// per market organization with the DSO.
fn channels() -> Vec<(String, Vec<&'static str>)> {
    let mut out = vec![(CHANNEL.to_owned(), PEERS.iter().map(|(m, _)| *m).collect())];
    for (msp_id, _, channel) in MARKET_ORGS {
        out.push((channel.to_owned(), vec!["DSOMSP", msp_id]));
    }
    out
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Folder of the network (created if missing; reused if it holds a network).
    #[arg(long, default_value = "network")]
    pub dir: PathBuf,
    /// First port: orderer0 listens on it, the peers on the next three, orderer1 and
    /// orderer2 on the two after them; each node's operations endpoint on its port + 10.
    #[arg(long, default_value_t = 7050)]
    pub base_port: u16,
    /// An external chaincode server (chaincode-as-a-service) to define on `market` for every
    /// peer, as NAME=HOST:PORT; repeatable. The peers dial it and speak Fabric's shim protocol.
    #[arg(long = "external-chaincode", value_name = "NAME=HOST:PORT")]
    pub external_chaincode: Vec<String>,
}

struct Node {
    name: String,
    kind: &'static str,
    config: PathBuf,
    addr: SocketAddr,
}

fn org_dir(msp_id: &str) -> String {
    format!("crypto/organizations/{msp_id}")
}

fn write(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// The orderers (name, port offset from the base port).
const ORDERERS: [(&str, u16); 3] = [("orderer0", 0), ("orderer1", 4), ("orderer2", 5)];

/// The channel file of `name` with member organizations `members` (the orderers are every
/// channel's consenters).
fn channel_file(
    name: &str,
    members: &[&str],
    orderer_ports: &[u16],
    peer_ports: &[u16; 3],
) -> String {
    let o = org_dir("OrdererMSP");
    let endpoints = orderer_ports
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        r#"name = "{name}"

[orderer]
type = "etcdraft"
batch_timeout_ms = 250
max_message_count = 500

[[orderer.organizations]]
msp_id = "OrdererMSP"
msp_dir = "{o}/msp"
endpoints = [{endpoints}]
"#
    );
    for ((orderer, _), port) in ORDERERS.iter().zip(orderer_ports) {
        text.push_str(&format!(
            "\n[[orderer.consenters]]\nhost = \"127.0.0.1\"\nport = {port}\n\
             client_tls_cert = \"{o}/orderers/{orderer}/tls/server.crt\"\n\
             server_tls_cert = \"{o}/orderers/{orderer}/tls/server.crt\"\n"
        ));
    }
    for ((msp_id, _), port) in PEERS.iter().zip(peer_ports) {
        if !members.contains(msp_id) {
            continue;
        }
        text.push_str(&format!(
            "\n[[organizations]]\nmsp_id = \"{msp_id}\"\nmsp_dir = \"{}/msp\"\nanchor_peers = [\"127.0.0.1:{port}\"]\n",
            org_dir(msp_id)
        ));
    }
    text
}

/// Creates `DIR/<name>.toml` and the genesis block `DIR/<name>.block` unless the block exists;
/// returns the genesis block.
fn channel_genesis(
    dir: &Path,
    name: &str,
    members: &[&str],
    orderer_ports: &[u16],
    peer_ports: &[u16; 3],
) -> anyhow::Result<Vec<u8>> {
    let block_path = dir.join(format!("{name}.block"));
    if !block_path.exists() {
        println!("[up] creating channel '{name}' ({})", members.join(", "));
        let text = channel_file(name, members, orderer_ports, peer_ports);
        write(&dir.join(format!("{name}.toml")), text.as_bytes())?;
        let spec = gridledger_channels::config::ChannelSpec::parse(&text)
            .with_context(|| format!("the generated channel file of {name}"))?;
        let config = spec
            .to_config(dir)
            .with_context(|| format!("building the channel config of {name}"))?;
        let block = gridledger_channels::genesis::genesis_block(
            name,
            config,
            gridledger_proto::prost_types::Timestamp {
                seconds: crate::now_unix_secs(),
                nanos: 0,
            },
        );
        write(&block_path, &prost::Message::encode_to_vec(&block))?;
    }
    std::fs::read(&block_path).with_context(|| format!("reading {}", block_path.display()))
}

fn prepare(dir: &Path, base_port: u16) -> anyhow::Result<Vec<Node>> {
    let crypto = dir.join("crypto");
    if !crypto.join("organizations").exists() {
        println!("[up] generating crypto material in {}", crypto.display());
        let mut config = crypto_config()?;
        config.seed = None; // fresh keys for every new network
        material::generate(&config, &crypto, crate::now_unix_secs())
            .context("generating crypto material")?;
    }
    let all_orderer_ports: Vec<u16> = ORDERERS.iter().map(|(_, off)| base_port + off).collect();
    let peer_ports = [base_port + 1, base_port + 2, base_port + 3];
    let block_path = dir.join(format!("{CHANNEL}.block"));
    let channel_toml = dir.join(format!("{CHANNEL}.toml"));
    // A network created before clusters has one consenter: keep running just that one.
    let orderer_count = match std::fs::read_to_string(&channel_toml) {
        Ok(text) if block_path.exists() => text
            .matches("[[orderer.consenters]]")
            .count()
            .clamp(1, ORDERERS.len()),
        _ => ORDERERS.len(),
    };
    let orderer_ports = &all_orderer_ports[..orderer_count];
    let mut genesis_blocks = Vec::new();
    for (name, members) in channels() {
        let block = channel_genesis(dir, &name, &members, orderer_ports, &peer_ports)?;
        genesis_blocks.push((name, members, block));
    }

    let mut nodes = Vec::new();
    // Node configs use absolute paths so they work from any working directory.
    let abs = |p: &Path| p.display().to_string();
    let tls_ca = dir.join(org_dir("OrdererMSP")).join("tlsca/tlsca.pem");
    for ((name, _), &port) in ORDERERS.iter().zip(orderer_ports) {
        let o = dir.join(org_dir("OrdererMSP")).join("orderers").join(name);
        let orderer_dir = dir.join("nodes").join(name);
        let orderer_config = format!(
            "name = \"{name}\"\nmsp_id = \"OrdererMSP\"\nlisten_address = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\
             signing_cert = \"{}\"\nsigning_key = \"{}\"\n\n[tls]\nserver_cert = \"{}\"\nserver_key = \"{}\"\n\n\
             [cluster]\ntls_ca_certs = [\"{}\"]\n\n[operations]\nlisten_address = \"127.0.0.1:{}\"\n",
            abs(&orderer_dir.join("data")),
            abs(&o.join("msp/signcerts/cert.pem")),
            abs(&o.join("msp/keystore/key.pem")),
            abs(&o.join("tls/server.crt")),
            abs(&o.join("tls/server.key")),
            abs(&tls_ca),
            port + OPERATIONS_PORT_OFFSET,
        );
        write(&orderer_dir.join("orderer.toml"), orderer_config.as_bytes())?;
        for (channel, _, genesis) in &genesis_blocks {
            write(
                &orderer_dir.join(format!("data/join/{channel}.block")),
                genesis,
            )?;
        }
        nodes.push(Node {
            name: (*name).into(),
            kind: "orderer",
            config: orderer_dir.join("orderer.toml"),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        });
    }
    // The private data collection of each meter channel: readings stay on the two parties'
    // peers, so they can be erased (see the meter chaincode).
    for (msp_id, _, channel) in MARKET_ORGS {
        let collections = serde_json::json!([{
            "name": "readings",
            "policy": format!("OR('DSOMSP.member', '{msp_id}.member')"),
            "requiredPeerCount": 0,
            "maxPeerCount": 1,
            "blockToLive": 0,
            "memberOnlyRead": true,
            "memberOnlyWrite": true,
        }]);
        let text = serde_json::to_vec_pretty(&collections).context("encoding collections")?;
        write(&dir.join(format!("{channel}-collections.json")), &text)?;
    }
    // The DSO's grid model, for its peer's feasibility endorsement.
    write(&dir.join("grid/ieee33.json"), FEEDER)?;
    write(&dir.join("grid/load-profile.csv"), LOAD_PROFILE.as_bytes())?;
    for ((msp_id, name), port) in PEERS.iter().zip(peer_ports) {
        let p = dir.join(org_dir(msp_id)).join("peers").join(name);
        let node_dir = dir.join("nodes").join(name);
        let mut peer_config = format!(
            "name = \"{name}\"\nmsp_id = \"{msp_id}\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\
             signing_cert = \"{}\"\nsigning_key = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
             msp_dir = \"{}\"\n\n\
             [operations]\nlisten_address = \"127.0.0.1:{}\"\n",
            abs(&node_dir.join("data")),
            abs(&p.join("msp/signcerts/cert.pem")),
            abs(&p.join("msp/keystore/key.pem")),
            abs(&p.join("tls/server.crt")),
            abs(&p.join("tls/server.key")),
            abs(&dir.join(org_dir(msp_id)).join("msp")),
            port + OPERATIONS_PORT_OFFSET,
        );
        if *msp_id == "DSOMSP" {
            peer_config.push_str(&format!(
                "\n# The DSO certifies every energy trade grid-feasible before endorsing it.\n                 [feasibility]\nchannel = \"{CHANNEL}\"\nchaincode = \"{ENERGY_CHAINCODE}\"\n                 feeder = \"{}\"\nload_profile = \"{}\"\n\n[feasibility.pods]\n",
                abs(&dir.join("grid/ieee33.json")),
                abs(&dir.join("grid/load-profile.csv")),
            ));
            for (supplier, letter, _) in MARKET_ORGS {
                for n in 1..=PROSUMERS_PER_ORG {
                    let bus = pod_bus(letter, n);
                    peer_config.push_str(&format!(
                        "\"POD-{letter}{n:03}\" = {{ bus = {bus}, supplier = \"{supplier}\" }}\n"
                    ));
                }
            }
        }
        write(&node_dir.join("peer.toml"), peer_config.as_bytes())?;
        for (channel, members, genesis) in &genesis_blocks {
            if members.contains(msp_id) {
                write(
                    &node_dir.join(format!("data/join/{channel}.block")),
                    genesis,
                )?;
            }
        }
        nodes.push(Node {
            name: (*name).into(),
            kind: "peer",
            config: node_dir.join("peer.toml"),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        });
    }
    Ok(nodes)
}

fn network_json(
    dir: &Path,
    base_port: u16,
    orderer_count: usize,
    chaincodes: &[&str],
) -> serde_json::Value {
    // Identities a network created by an older `up` lacks are left out.
    let users = |msp_id: &str, names: &[String]| -> Vec<serde_json::Value> {
        names
            .iter()
            .map(|n| format!("{}/users/{n}/msp", org_dir(msp_id)))
            .zip(names)
            .filter(|(base, _)| dir.join(base).join("signcerts/cert.pem").exists())
            .map(|(base, n)| json!({"name": n, "cert": format!("{base}/signcerts/cert.pem"), "key": format!("{base}/keystore/key.pem")}))
            .collect()
    };
    let organizations: Vec<serde_json::Value> = PEERS
        .iter()
        .enumerate()
        .map(|(i, (msp_id, name))| {
            json!({
                "mspId": msp_id,
                "peers": [{
                    "name": name,
                    "endpoint": format!("127.0.0.1:{}", base_port + 1 + i as u16),
                    "operationsEndpoint": format!(
                        "127.0.0.1:{}",
                        base_port + 1 + i as u16 + OPERATIONS_PORT_OFFSET
                    ),
                    "tlsCaCert": format!("{}/tlsca/tlsca.pem", org_dir(msp_id)),
                    "serverName": name,
                }],
                "users": users(msp_id, &users_of(msp_id)),
                "admins": users(msp_id, &["Admin".to_owned()]),
            })
        })
        .collect();
    let mut channels = vec![json!({
        "name": CHANNEL,
        "organizations": PEERS.iter().map(|(m, _)| *m).collect::<Vec<_>>(),
        "chaincodes": chaincodes,
    })];
    for (msp_id, _, channel) in MARKET_ORGS {
        channels.push(json!({
            "name": channel,
            "organizations": ["DSOMSP", msp_id],
            "chaincodes": [METER_CHAINCODE],
        }));
    }
    json!({
        "orderers": ORDERERS[..orderer_count].iter().map(|(name, off)| json!({
            "name": name,
            "mspId": "OrdererMSP",
            "endpoint": format!("127.0.0.1:{}", base_port + off),
            "operationsEndpoint": format!("127.0.0.1:{}", base_port + off + OPERATIONS_PORT_OFFSET),
            "tlsCaCert": format!("{}/tlsca/tlsca.pem", org_dir("OrdererMSP")),
            "serverName": name,
        })).collect::<Vec<_>>(),
        "organizations": organizations,
        "channels": channels,
    })
}

/// The client identities of an organization: User1; a market organization's aggregator and
/// prosumers (certificates carrying their point of delivery); the DSO's meters (carrying meter
/// id and POD).
fn users_of(msp_id: &str) -> Vec<String> {
    let mut names = vec!["User1".to_owned()];
    for (market_org, letter, _) in MARKET_ORGS {
        if msp_id == market_org {
            names.push(format!("Aggregator-{letter}"));
        }
        for n in 1..=PROSUMERS_PER_ORG {
            if msp_id == market_org {
                names.push(format!("Prosumer-{letter}{n:03}"));
            } else if msp_id == "DSOMSP" {
                names.push(format!("Meter-{letter}{n:03}"));
            }
        }
    }
    names
}

/// glibc's malloc arenas for each node process unless the caller's environment chose a number:
/// with the default (8 per core) the busiest peer's resident memory under load nearly doubled
/// in BENCHMARKS.md's measurement, for no throughput gained. Other allocators ignore it.
const MALLOC_ARENAS: &str = "2";

fn spawn(node: &Node, logs: &Path) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating the gridledger binary")?;
    let arenas = std::env::var_os("MALLOC_ARENA_MAX").unwrap_or_else(|| MALLOC_ARENAS.into());
    let log_path = logs.join(format!("{}.log", node.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let err = log.try_clone().context("duplicating the log file handle")?;
    Command::new(exe)
        .args([node.kind, "start", "--config"])
        .arg(&node.config)
        .arg("--exit-on-stdin-close")
        .env("MALLOC_ARENA_MAX", arenas)
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", node.name))
}

fn wait_serving(node: &Node, child: &mut Child) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&node.addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait().context("checking a node")? {
            bail!(
                "{} exited during start-up ({status}); see its log",
                node.name
            );
        }
        if start.elapsed() > START_TIMEOUT {
            bail!(
                "{} did not start serving on {} within {:?}",
                node.name,
                node.addr,
                START_TIMEOUT
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop_all(children: &mut Vec<(String, Child)>) {
    // Closing a node's standard input asks it to stop cleanly.
    for (_, child) in children.iter_mut() {
        drop(child.stdin.take());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (name, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    eprintln!("[up] {name} did not stop in time; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
    }
    children.clear();
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    anyhow::ensure!(
        args.base_port <= u16::MAX - 5 - OPERATIONS_PORT_OFFSET,
        "--base-port leaves no room for the peers"
    );
    let chaincodes = chaincodes(&args.external_chaincode)?;
    let nodes = prepare(&dir, args.base_port)?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let _ = std::fs::remove_file(dir.join("network.json"));

    let mut children: Vec<(String, Child)> = Vec::new();
    for node in &nodes {
        println!(
            "[up] starting {} on {} (log: {})",
            node.name,
            node.addr,
            logs.join(format!("{}.log", node.name)).display()
        );
        let mut child = match spawn(node, &logs) {
            Ok(c) => c,
            Err(e) => {
                stop_all(&mut children);
                return Err(e);
            }
        };
        if let Err(e) = wait_serving(node, &mut child) {
            children.push((node.name.clone(), child));
            stop_all(&mut children);
            return Err(e);
        }
        children.push((node.name.clone(), child));
    }
    let orderer_count = nodes.iter().filter(|n| n.kind == "orderer").count();
    let mut names: Vec<&str> = chaincodes.iter().map(|(n, _)| n.as_str()).collect();
    names.extend(MARKET_CHAINCODES);
    let network = network_json(&dir, args.base_port, orderer_count, &names);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The chaincodes are defined through the lifecycle, as the network's admins would.
    let energy: Vec<(String, crate::chaincode::CodeArgs)> = MARKET_CHAINCODES
        .iter()
        .map(|name| {
            (
                (*name).to_string(),
                crate::chaincode::CodeArgs {
                    builtin: Some((*name).into()),
                    ccaas: None,
                },
            )
        })
        .collect();
    let deployed = runtime.block_on(async {
        crate::chaincode::deploy_for_up(
            &network,
            &dir,
            CHANNEL,
            &chaincodes,
            ENDORSEMENT_POLICY,
            None,
        )
        .await?;
        crate::chaincode::deploy_for_up(&network, &dir, CHANNEL, &energy, ENERGY_POLICY, None)
            .await?;
        let meter = [(
            METER_CHAINCODE.to_string(),
            crate::chaincode::CodeArgs {
                builtin: Some(METER_CHAINCODE.into()),
                ccaas: None,
            },
        )];
        for (msp_id, _, channel) in MARKET_ORGS {
            // A reading is endorsed by both parties to the bilateral channel.
            let policy = format!("AND('DSOMSP.peer', '{msp_id}.peer')");
            let collections = dir.join(format!("{channel}-collections.json"));
            crate::chaincode::deploy_for_up(
                &network,
                &dir,
                channel,
                &meter,
                &policy,
                Some(&collections),
            )
            .await?;
            register_meter_channel(&network, &dir, msp_id, channel).await?;
        }
        Ok::<(), anyhow::Error>(())
    });
    if let Err(e) = deployed {
        stop_all(&mut children);
        return Err(e);
    }
    let network = serde_json::to_vec_pretty(&network).context("encoding network.json")?;
    // Written whole then renamed: a client polling for the file never reads half of it.
    let partial = dir.join("network.json.partial");
    write(&partial, &network)?;
    std::fs::rename(&partial, dir.join("network.json"))
        .with_context(|| format!("renaming {} to network.json", partial.display()))?;
    println!(
        "[up] network serving; wrote {}",
        dir.join("network.json").display()
    );
    println!(
        "[up] channel '{CHANNEL}' with chaincodes '{CHAINCODE}' (endorsement policy {ENDORSEMENT_POLICY}) and '{ENERGY_CHAINCODE}', 'certs', 'flex' ({ENERGY_POLICY}; the DSO's peer checks every trade on its feeder model)"
    );
    for (msp_id, _, channel) in MARKET_ORGS {
        println!(
            "[up] channel '{channel}' (DSOMSP, {msp_id}) with chaincode '{METER_CHAINCODE}': the smart-meter readings of {msp_id}'s customers"
        );
    }
    println!("[up] Ctrl-C stops the network");

    let exited = runtime.block_on(async {
        let mut signal = std::pin::pin!(crate::node::shutdown_signal(false));
        loop {
            tokio::select! {
                _ = &mut signal => return None,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    for (name, child) in children.iter_mut() {
                        if let Ok(Some(status)) = child.try_wait() {
                            return Some(format!("{name} exited unexpectedly ({status})"));
                        }
                    }
                }
            }
        }
    });
    println!("[up] stopping the network");
    stop_all(&mut children);
    match exited {
        Some(reason) => bail!("{reason}; see the logs in {}", logs.display()),
        None => Ok(()),
    }
}

/// Has `msp_id`'s admin register `channel` as the channel of its customers' meters in the
/// `energy` chaincode (so the DSO's attestations are checked against it), unless it is already.
async fn register_meter_channel(
    network: &serde_json::Value,
    dir: &Path,
    msp_id: &str,
    channel: &str,
) -> anyhow::Result<()> {
    let gateway = crate::chaincode::admin_gateway(network, dir, msp_id).await?;
    let energy = gateway.network(CHANNEL).contract(ENERGY_CHAINCODE);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(current) = energy.evaluate("GetMeterChannel", &[msp_id]).await {
            if current == channel.as_bytes() {
                return Ok(());
            }
        }
        match energy.submit("RegisterMeterChannel", &[channel]).await {
            Ok(_) => {
                println!(
                    "[up] {msp_id} registered '{channel}' as its meter channel on '{CHANNEL}'"
                );
                return Ok(());
            }
            // The endorsing peers are not all at the latest block yet: endorse again.
            Err(e) if Instant::now() < deadline && e.to_string().contains("do not match") => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("{msp_id} registering its meter channel '{channel}'")
                });
            }
        }
    }
}

/// The chaincodes `up` defines on `market`: the builtin `basic`, and one chaincode-as-a-service
/// package per `--external-chaincode NAME=HOST:PORT`.
fn chaincodes(specs: &[String]) -> anyhow::Result<Vec<(String, crate::chaincode::CodeArgs)>> {
    let mut out = vec![(
        CHAINCODE.to_string(),
        crate::chaincode::CodeArgs {
            builtin: Some(CHAINCODE.into()),
            ccaas: None,
        },
    )];
    for spec in specs {
        let Some((name, address)) = spec.split_once('=') else {
            bail!("--external-chaincode {spec:?}: expected NAME=HOST:PORT");
        };
        anyhow::ensure!(
            gridledger_peer::lifecycle::valid_chaincode_name(name)
                && out.iter().all(|(n, _)| n != name)
                && address.contains(':'),
            "--external-chaincode {spec:?}: expected NAME=HOST:PORT with a valid chaincode name other than {CHAINCODE:?}, each name once"
        );
        println!(
            "[up] chaincode '{name}' on '{CHANNEL}' is served by the external chaincode server at {address}"
        );
        out.push((
            name.to_string(),
            crate::chaincode::CodeArgs {
                builtin: None,
                ccaas: Some(address.to_string()),
            },
        ));
    }
    Ok(out)
}
