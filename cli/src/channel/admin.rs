//! The channel admin's commands that talk to the network: fetching blocks and chain info from
//! an organization's peer, preparing config updates from the channel's current config,
//! signing update files, the dry run that shows who signed and whether each `mod_policy` is
//! met, and submitting an update to the ordering service and waiting for its config block.
//!
//! Identities and endpoints come from a network.json (see `chaincode`'s loader). Blocks are read
//! from the peer with qscc (`GetChainInfo`, `GetBlockByNumber`), or for `fetch --orderer` from
//! an orderer's Deliver as the organization's admin, and verified before use: the
//! header's data hash against the data, the orderer's signature against the channel's
//! `/Channel/Orderer/BlockValidation` policy, and the newest block's header hash against the
//! chain info.

use super::change::{self, Change};
use crate::chaincode::Network;
use anyhow::{Context, bail};
use gridledger_channels::config::ChannelConfig;
use gridledger_channels::policy::SignedData;
use gridledger_channels::update::{self, Authorization, NONCE_LEN};
use gridledger_identity::SigningIdentity;
use gridledger_proto::prost::Message;
use gridledger_proto::{block_data_hash, block_header_hash, common, orderer};
use gridledger_sdk::Gateway;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long `update submit` waits for the new config block on the organization's peer.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often it asks.
const POLL: Duration = Duration::from_millis(250);
/// The policy an orderer's block signature must satisfy.
const BLOCK_VALIDATION: &str = "/Channel/Orderer/BlockValidation";

/// An organization's view of a channel: its admin's Gateway on its first peer.
pub(crate) struct ChannelClient {
    gateway: Gateway,
    channel: String,
}

impl ChannelClient {
    /// Connects as `org`'s admin (or, without `org`, the first organization network.json lists
    /// for the channel).
    pub(crate) async fn connect(
        network: &Network,
        channel: &str,
        org: Option<&str>,
    ) -> anyhow::Result<ChannelClient> {
        let msp_id = match org {
            Some(o) => o.to_string(),
            None => network
                .channel_msp_ids(channel)
                .into_iter()
                .next()
                .with_context(|| format!("network.json lists no organization of {channel}"))?,
        };
        Ok(ChannelClient {
            gateway: network.gateway(&msp_id).await?,
            channel: channel.to_string(),
        })
    }

    /// qscc `GetChainInfo`.
    pub(crate) async fn info(&self) -> anyhow::Result<common::BlockchainInfo> {
        let bytes = self
            .gateway
            .network(&self.channel)
            .contract("qscc")
            .evaluate("GetChainInfo", &[&self.channel])
            .await
            .with_context(|| format!("qscc GetChainInfo on channel {}", self.channel))?;
        common::BlockchainInfo::decode(bytes.as_slice()).context("qscc GetChainInfo's answer")
    }

    /// Block `number`, its data hash checked.
    async fn raw_block(&self, number: u64) -> anyhow::Result<common::Block> {
        let bytes = self
            .gateway
            .network(&self.channel)
            .contract("qscc")
            .evaluate("GetBlockByNumber", &[&self.channel, &number.to_string()])
            .await
            .with_context(|| format!("qscc GetBlockByNumber {number} on {}", self.channel))?;
        let block = common::Block::decode(bytes.as_slice())
            .with_context(|| format!("block {number} is not a protobuf common.Block"))?;
        let header = block
            .header
            .as_ref()
            .with_context(|| format!("block {number} has no header"))?;
        if header.number != number {
            bail!(
                "asked for block {number}, the peer answered block {}",
                header.number
            );
        }
        let data = block.data.clone().unwrap_or_default();
        if header.data_hash != block_data_hash(&data) {
            bail!("block {number}: the header's data hash does not match its data");
        }
        Ok(block)
    }

    /// The newest config block and the config it carries (found through the newest block's
    /// LAST_CONFIG, or by walking back when that slot is empty).
    pub(crate) async fn latest_config(&self) -> anyhow::Result<(common::Block, ChannelConfig)> {
        let info = self.info().await?;
        let newest = info
            .height
            .checked_sub(1)
            .context("the channel has no blocks")?;
        let tip = self.raw_block(newest).await?;
        let mut number = last_config_index(&tip).unwrap_or(newest);
        loop {
            let block = if number == newest {
                tip.clone()
            } else {
                self.raw_block(number).await?
            };
            if let Ok(config) = ChannelConfig::from_block(&block) {
                if number > 0 {
                    verify_signature(&block, &config)?;
                }
                return Ok((block, config));
            }
            number = number
                .checked_sub(1)
                .context("the channel has no config block")?;
        }
    }

    /// Block `number` verified: data hash, and the orderer's signature against the current
    /// config's BlockValidation policy (the genesis block is unsigned).
    pub(crate) async fn block(
        &self,
        number: u64,
        config: &ChannelConfig,
    ) -> anyhow::Result<common::Block> {
        let block = self.raw_block(number).await?;
        if number > 0 {
            verify_signature(&block, config)?;
        }
        Ok(block)
    }
}

/// The LAST_CONFIG index the orderer recorded in a block's SIGNATURES metadata.
fn last_config_index(block: &common::Block) -> Option<u64> {
    let slot = block
        .metadata
        .as_ref()?
        .metadata
        .get(common::BlockMetadataIndex::Signatures as usize)?;
    let metadata = common::Metadata::decode(slot.as_slice()).ok()?;
    let value = common::OrdererBlockMetadata::decode(metadata.value.as_slice()).ok()?;
    value.last_config.map(|c| c.index)
}

/// Checks the orderer signatures of `block` against `config`'s BlockValidation policy.
fn verify_signature(block: &common::Block, config: &ChannelConfig) -> anyhow::Result<()> {
    let header = block.header.as_ref().context("a block without a header")?;
    let number = header.number;
    let slot = block
        .metadata
        .as_ref()
        .and_then(|m| {
            m.metadata
                .get(common::BlockMetadataIndex::Signatures as usize)
        })
        .with_context(|| format!("block {number} has no SIGNATURES metadata"))?;
    let metadata = common::Metadata::decode(slot.as_slice())
        .with_context(|| format!("block {number}: SIGNATURES metadata does not decode"))?;
    let header_bytes = gridledger_proto::block_header_bytes(header);
    let mut entries = Vec::with_capacity(metadata.signatures.len());
    for sig in &metadata.signatures {
        let signature_header = common::SignatureHeader::decode(sig.signature_header.as_slice())
            .with_context(|| format!("block {number}: a signature header does not decode"))?;
        let mut data = metadata.value.clone();
        data.extend_from_slice(&sig.signature_header);
        data.extend_from_slice(&header_bytes);
        entries.push((data, signature_header.creator, sig.signature.clone()));
    }
    let signed: Vec<SignedData<'_>> = entries
        .iter()
        .map(|(data, identity, signature)| SignedData {
            data,
            identity,
            signature,
        })
        .collect();
    let now = u64::try_from(crate::now_unix_secs()).unwrap_or(0);
    let evaluation = config
        .evaluate_policy(BLOCK_VALIDATION, &signed, now)
        .with_context(|| format!("evaluating {BLOCK_VALIDATION} for block {number}"))?;
    if !evaluation.satisfied {
        bail!(
            "block {number} is not signed as {BLOCK_VALIDATION} requires:\n{}",
            evaluation.explanation
        );
    }
    Ok(())
}

/// One block from `endpoint`'s Deliver, asked for as `signer`; its data hash checked.
async fn deliver_block(
    network: &Network,
    endpoint: &crate::chaincode::PeerEntry,
    signer: &SigningIdentity,
    channel: &str,
    position: orderer::seek_position::Type,
) -> anyhow::Result<common::Block> {
    let seek = orderer::SeekPosition {
        r#type: Some(position),
    };
    let info = orderer::SeekInfo {
        start: Some(seek),
        stop: Some(seek),
        behavior: orderer::seek_info::SeekBehavior::FailIfNotReady as i32,
        error_response: 0,
        content_type: 0,
    };
    let creator = signer.serialized().to_vec();
    let nonce = fresh_nonce()?;
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: common::ChannelHeader {
                r#type: common::HeaderType::DeliverSeekInfo as i32,
                timestamp: Some(gridledger_proto::prost_types::Timestamp {
                    seconds: crate::now_unix_secs(),
                    nanos: 0,
                }),
                channel_id: channel.to_string(),
                tx_id: gridledger_proto::compute_tx_id(&nonce, &creator),
                ..Default::default()
            }
            .encode_to_vec(),
            signature_header: common::SignatureHeader {
                creator,
                nonce: nonce.to_vec(),
            }
            .encode_to_vec(),
        }),
        data: info.encode_to_vec(),
    }
    .encode_to_vec();
    let envelope = common::Envelope {
        signature: signer.sign(&payload),
        payload,
    };
    let attempt = async {
        let connection = network.connect(endpoint).await?;
        let mut client = orderer::atomic_broadcast_client::AtomicBroadcastClient::new(connection);
        let mut stream = client
            .deliver(tokio_stream::iter(vec![envelope]))
            .await
            .context("Deliver")?
            .into_inner();
        loop {
            let message = stream
                .message()
                .await
                .context("Deliver stream")?
                .context("the orderer closed Deliver before sending a block")?;
            match message.r#type {
                Some(orderer::deliver_response::Type::Block(block)) => return Ok(block),
                Some(orderer::deliver_response::Type::Status(code)) => {
                    let status = common::Status::try_from(code)
                        .map(|s| s.as_str_name().to_string())
                        .unwrap_or_else(|_| code.to_string());
                    bail!("the orderer answered {status} instead of a block");
                }
                None => continue,
            }
        }
    };
    let block: common::Block = tokio::time::timeout(COMMIT_TIMEOUT, attempt)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {COMMIT_TIMEOUT:?}"))?
        .with_context(|| format!("Deliver of channel {channel} from {}", endpoint.name))?;
    let header = block
        .header
        .as_ref()
        .context("a delivered block without a header")?;
    let data = block.data.clone().unwrap_or_default();
    if header.data_hash != block_data_hash(&data) {
        bail!(
            "block {}: the header's data hash does not match its data",
            header.number
        );
    }
    Ok(block)
}

/// `channel fetch --orderer`: the block from that orderer's Deliver, verified against the
/// latest config block, itself fetched from the orderer.
async fn fetch_from_orderer(
    network: &Network,
    orderer_name: &str,
    channel: &str,
    org: &str,
    which: Option<&str>,
    config_block: bool,
) -> anyhow::Result<common::Block> {
    use orderer::seek_position::Type;
    let endpoint = network
        .orderers()
        .iter()
        .find(|o| o.name == orderer_name)
        .with_context(|| format!("network.json lists no orderer {orderer_name}"))?;
    let admin = network.org_admin(org)?;
    let newest = deliver_block(
        network,
        endpoint,
        &admin,
        channel,
        Type::Newest(orderer::SeekNewest {}),
    )
    .await?;
    let newest_number = newest.header.as_ref().map_or(0, |h| h.number);
    let last_config = last_config_index(&newest)
        .with_context(|| format!("block {newest_number} records no last config block"))?;
    let config_blk = if last_config == newest_number {
        newest.clone()
    } else {
        let specified = Type::Specified(orderer::SeekSpecified {
            number: last_config,
        });
        deliver_block(network, endpoint, &admin, channel, specified).await?
    };
    let config = ChannelConfig::from_block(&config_blk)
        .with_context(|| format!("block {last_config} is not a config block"))?;
    if last_config > 0 {
        verify_signature(&config_blk, &config)?;
    }
    if config_block {
        return Ok(config_blk);
    }
    let number = match which.unwrap_or("newest") {
        "newest" => newest_number,
        n => n
            .parse::<u64>()
            .with_context(|| format!("--block {n:?} is neither a number nor \"newest\""))?,
    };
    let block = if number == newest_number {
        newest
    } else {
        let specified = Type::Specified(orderer::SeekSpecified { number });
        deliver_block(network, endpoint, &admin, channel, specified).await?
    };
    if number > 0 {
        verify_signature(&block, &config)?;
    }
    Ok(block)
}

/// `channel fetch`: block `which` ("newest", a number, or the latest config block) to `out`,
/// from `org`'s peer or, with `orderer`, from that orderer's Deliver.
pub(crate) async fn fetch(
    network: &Network,
    channel: &str,
    org: &str,
    orderer_name: Option<&str>,
    which: Option<&str>,
    config_block: bool,
    out: &Path,
) -> anyhow::Result<()> {
    if let Some(name) = orderer_name {
        let block = fetch_from_orderer(network, name, channel, org, which, config_block).await?;
        let number = block.header.as_ref().map_or(0, |h| h.number);
        std::fs::write(out, block.encode_to_vec())
            .with_context(|| format!("writing {}", out.display()))?;
        println!(
            "wrote block {number} of channel {channel} from {name} to {}",
            out.display()
        );
        return Ok(());
    }
    let client = ChannelClient::connect(network, channel, Some(org)).await?;
    let (config_blk, config) = client.latest_config().await?;
    let block = if config_block {
        config_blk
    } else {
        let info = client.info().await?;
        let newest = info.height.saturating_sub(1);
        let number = match which.unwrap_or("newest") {
            "newest" => newest,
            n => n
                .parse::<u64>()
                .with_context(|| format!("--block {n:?} is neither a number nor \"newest\""))?,
        };
        if number > newest {
            bail!(
                "channel {channel} has no block {number} yet (height {})",
                info.height
            );
        }
        let block = client.block(number, &config).await?;
        if number == newest {
            let hash = block
                .header
                .as_ref()
                .map(block_header_hash)
                .unwrap_or_default();
            if hash.as_slice() != info.current_block_hash.as_slice() {
                bail!("block {number}'s header hash differs from the peer's chain info");
            }
        }
        block
    };
    let number = block.header.as_ref().map_or(0, |h| h.number);
    std::fs::write(out, block.encode_to_vec())
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote block {number} of channel {channel} to {}",
        out.display()
    );
    Ok(())
}

/// `channel info`: height and the newest and previous block hashes.
pub(crate) async fn info(network: &Network, channel: &str, org: &str) -> anyhow::Result<()> {
    let client = ChannelClient::connect(network, channel, Some(org)).await?;
    let info = client.info().await?;
    crate::print_out(&format!(
        "channel:             {channel}\nheight:              {}\ncurrent block hash:  {}\nprevious block hash: {}\n",
        info.height,
        hex::encode(&info.current_block_hash),
        hex::encode(&info.previous_block_hash)
    ))?;
    Ok(())
}

/// Writes the unsigned update that makes `change` to the channel's current config.
pub(crate) async fn prepare(
    network: &Network,
    channel: &str,
    org: Option<&str>,
    change: &Change,
    out: &Path,
) -> anyhow::Result<()> {
    let client = ChannelClient::connect(network, channel, org).await?;
    let (_, current) = client.latest_config().await?;
    let envelope = change::prepare(channel, current.config(), change)
        .with_context(|| format!("computing the config update of channel {channel}"))?;
    std::fs::write(out, envelope.encode_to_vec())
        .with_context(|| format!("writing {}", out.display()))?;
    let update = update::decode_update(&envelope)?;
    println!(
        "wrote the config update of channel {channel} (against config sequence {}) to {}; \
         writes: {}",
        current.sequence(),
        out.display(),
        written_paths(&update).join(", ")
    );
    Ok(())
}

/// The paths of the write set whose version differs from the read set's (a rough, readable
/// summary; `update check` shows the exact delta).
fn written_paths(update: &common::ConfigUpdate) -> Vec<String> {
    fn walk(
        path: &str,
        read: Option<&common::ConfigGroup>,
        write: &common::ConfigGroup,
        out: &mut Vec<String>,
    ) {
        if read.is_none_or(|r| r.version != write.version) {
            out.push(path.to_string());
            return;
        }
        for (k, v) in &write.values {
            if read
                .and_then(|r| r.values.get(k))
                .is_none_or(|r| r.version != v.version)
            {
                out.push(format!("{path}/{k}"));
            }
        }
        for (k, p) in &write.policies {
            if read
                .and_then(|r| r.policies.get(k))
                .is_none_or(|r| r.version != p.version)
            {
                out.push(format!("{path}/{k}"));
            }
        }
        for (k, g) in &write.groups {
            walk(
                &format!("{path}/{k}"),
                read.and_then(|r| r.groups.get(k)),
                g,
                out,
            );
        }
    }
    let mut out = Vec::new();
    if let Some(write) = update.write_set.as_ref() {
        walk("/Channel", update.read_set.as_ref(), write, &mut out);
    }
    out
}

/// Reads an update file.
fn read_update(file: &Path) -> anyhow::Result<common::ConfigUpdateEnvelope> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    common::ConfigUpdateEnvelope::decode(bytes.as_slice())
        .with_context(|| format!("{} is not a ConfigUpdateEnvelope", file.display()))
}

/// 24 fresh random bytes for a signature header, from the system's random generator.
fn fresh_nonce() -> anyhow::Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| anyhow::anyhow!("the system's random number generator failed"))?;
    Ok(nonce)
}

/// `update sign`: adds `admin`'s signature (`label` says whose, for messages) to the file, in
/// place.
pub(crate) fn sign(admin: &SigningIdentity, label: &str, file: &Path) -> anyhow::Result<()> {
    let mut envelope = read_update(file)?;
    let update = update::decode_update(&envelope)?;
    let already = envelope.signatures.iter().any(|s| {
        common::SignatureHeader::decode(s.signature_header.as_slice())
            .is_ok_and(|h| h.creator == admin.serialized())
    });
    if already {
        bail!("{} already carries a signature of {label}", file.display());
    }
    let nonce = fresh_nonce()?;
    update::sign(&mut envelope, admin, nonce);
    let partial = file.with_extension("partial");
    std::fs::write(&partial, envelope.encode_to_vec())
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, file).with_context(|| format!("replacing {}", file.display()))?;
    let signers: Vec<String> = update::signers(&envelope, None, 0)
        .into_iter()
        .map(|s| s.msp_id)
        .collect();
    println!(
        "signed the config update of channel {} as {label}; signed by: {}",
        update.channel_id,
        signers.join(", ")
    );
    Ok(())
}

/// The dry run's report: who signed, every changed element with its mod_policy and verdict,
/// and the explanation of each unsatisfied policy.
pub(crate) fn report(
    current: &ChannelConfig,
    envelope: &common::ConfigUpdateEnvelope,
    authorization: &Authorization,
    now: u64,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "config update of channel {} against config sequence {}",
        authorization.channel_id,
        current.sequence()
    );
    let signers = update::signers(envelope, Some(current.msp_manager()), now);
    let _ = writeln!(out, "signatures ({}):", signers.len());
    for s in &signers {
        let role = match s.is_admin {
            Some(true) => "admin",
            Some(false) => "not an admin",
            None => "unverified",
        };
        let _ = write!(
            out,
            "  {} ({role}){}",
            s.msp_id,
            s.subject
                .as_deref()
                .map(|subj| format!(" {subj}"))
                .unwrap_or_default()
        );
        match &s.problem {
            Some(p) => {
                let _ = writeln!(out, " — REJECTED: {p}");
            }
            None => out.push('\n'),
        }
    }
    let _ = writeln!(out, "changes:");
    let mut explained: Vec<&str> = Vec::new();
    for c in &authorization.changes {
        let what = match c.change {
            update::Change::Added => "added".to_string(),
            update::Change::Modified { from, to } => format!("version {from} -> {to}"),
        };
        match &c.authorization {
            None => {
                let _ = writeln!(
                    out,
                    "  {} ({what}): new, authorized through its parent group",
                    c.element
                );
            }
            Some((policy, evaluation)) => {
                let verdict = if evaluation.satisfied {
                    "satisfied"
                } else {
                    "NOT satisfied"
                };
                let _ = writeln!(
                    out,
                    "  {} ({what}): mod_policy {policy}: {verdict}",
                    c.element
                );
                if !explained.contains(&policy.as_str()) {
                    explained.push(policy);
                    let _ = writeln!(out, "    policy {policy}:");
                    for line in evaluation.explanation.to_string().lines() {
                        let _ = writeln!(out, "      {line}");
                    }
                }
            }
        }
    }
    if authorization.is_authorized() {
        let _ = writeln!(out, "verdict: the update would be accepted");
    } else {
        let missing: Vec<String> = authorization
            .changes
            .iter()
            .filter(|c| !c.is_satisfied())
            .filter_map(|c| c.authorization.as_ref().map(|(p, _)| p.clone()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let _ = writeln!(
            out,
            "verdict: the update would be REFUSED: not satisfied: {}",
            missing.join(", ")
        );
    }
    out
}

/// Fetches the channel's config and checks `envelope` against it.
async fn check_against(
    client: &ChannelClient,
    envelope: &common::ConfigUpdateEnvelope,
) -> anyhow::Result<(ChannelConfig, Authorization, String)> {
    let (_, current) = client.latest_config().await?;
    let now = u64::try_from(crate::now_unix_secs()).unwrap_or(0);
    let authorization = update::check(&current, envelope, now)
        .context("the update does not apply to the channel's current config")?;
    let text = report(&current, envelope, &authorization, now);
    Ok((current, authorization, text))
}

/// `update check`: prints the dry run; errors when the update would be refused.
pub(crate) async fn check(
    network: &Network,
    channel: &str,
    org: Option<&str>,
    file: &Path,
) -> anyhow::Result<()> {
    let envelope = read_update(file)?;
    let client = ChannelClient::connect(network, channel, org).await?;
    let (_, authorization, text) = check_against(&client, &envelope).await?;
    crate::print_out(&text)?;
    if !authorization.is_authorized() {
        bail!(
            "the signatures on {} do not satisfy the update's policies",
            file.display()
        );
    }
    Ok(())
}

/// `update submit`: checks, wraps the update in a CONFIG_UPDATE transaction signed by `org`'s
/// admin, broadcasts it and waits for the config block on `org`'s peer; prints its number.
pub(crate) async fn submit(
    network: &Network,
    channel: &str,
    org: &str,
    file: &Path,
) -> anyhow::Result<()> {
    let envelope = read_update(file)?;
    let client = ChannelClient::connect(network, channel, Some(org)).await?;
    let (current, authorization, text) = check_against(&client, &envelope).await?;
    if !authorization.is_authorized() {
        eprint!("{text}");
        bail!(
            "not submitted: the signatures on {} do not satisfy the update's policies",
            file.display()
        );
    }
    let height_before = client.info().await?.height;
    let admin = network.org_admin(org)?;
    let nonce = fresh_nonce()?;
    let now = crate::now_unix_secs();
    let transaction = update::config_update_transaction(
        channel,
        &envelope,
        &admin,
        nonce,
        gridledger_proto::prost_types::Timestamp {
            seconds: now,
            nanos: 0,
        },
    );
    broadcast(network, transaction).await?;

    let deadline = Instant::now() + COMMIT_TIMEOUT;
    let mut next = height_before;
    loop {
        let height = client.info().await?.height;
        while next < height {
            let block = client.raw_block(next).await?;
            if let Ok(config) = ChannelConfig::from_block(&block)
                && config.sequence() > current.sequence()
            {
                verify_signature(&block, &current)?;
                println!(
                    "config block {next} committed on {org}'s peer: channel {channel} is at \
                     config sequence {}",
                    config.sequence()
                );
                return Ok(());
            }
            next += 1;
        }
        if Instant::now() > deadline {
            bail!(
                "the ordering service accepted the update, but no new config block reached \
                 {org}'s peer within {COMMIT_TIMEOUT:?}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sends `envelope` to the first orderer that accepts it.
async fn broadcast(network: &Network, envelope: common::Envelope) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    for endpoint in network.orderers() {
        let attempt = async {
            let channel = network.connect(endpoint).await?;
            let mut client = orderer::atomic_broadcast_client::AtomicBroadcastClient::new(channel);
            let mut stream = client
                .broadcast(tokio_stream::iter(vec![envelope.clone()]))
                .await
                .context("Broadcast")?
                .into_inner();
            let response = stream
                .message()
                .await
                .context("Broadcast stream")?
                .context("the orderer closed Broadcast without an answer")?;
            anyhow::Ok(response)
        };
        match tokio::time::timeout(COMMIT_TIMEOUT, attempt).await {
            Ok(Ok(response)) if response.status == common::Status::Success as i32 => {
                return Ok(());
            }
            Ok(Ok(response)) => {
                // A refusal is the ordering service's verdict: do not try the others.
                let status = common::Status::try_from(response.status)
                    .map(|s| s.as_str_name().to_string())
                    .unwrap_or_else(|_| response.status.to_string());
                bail!(
                    "{} refused the config update ({status}): {}",
                    endpoint.name,
                    response.info
                );
            }
            Ok(Err(e)) => failures.push(format!("{}: {e:#}", endpoint.name)),
            Err(_) => failures.push(format!("{}: no answer", endpoint.name)),
        }
    }
    if failures.is_empty() {
        bail!("network.json lists no orderer to broadcast to");
    }
    bail!("no orderer took the config update: {}", failures.join("; "))
}
