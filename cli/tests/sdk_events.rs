//! The Rust SDK's events and signers against a network under `gridledger up`: chaincode
//! events of committed transactions, resumed after an application restart from a file
//! checkpoint with no event lost or repeated; block events (full and filtered) resumed from a
//! checkpoint likewise; and a signer implemented outside the SDK — a key in a wrapper standing
//! in for an HSM, returning high-S signatures as devices do — submitting transactions.

mod support;

use gridledger_identity::SigningIdentity;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, protos};
use gridledger_sdk::{
    ChaincodeEvent, ChaincodeEvents, Checkpoint, Contract, EventsOptions, FileCheckpointer,
    Gateway, SignError, Signer,
};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const CHANNEL: &str = "market";
const CHAINCODE: &str = "basic";
/// The longest wait for one event or block (a bound on a broken stream, not a measurement).
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Submits `function(args)` and waits for its commit, endorsing again while the endorsing
/// peers disagree (one has not committed the latest block yet); the transaction id and block.
async fn submit(contract: &Contract, function: &str, args: &[&str]) -> (String, u64) {
    for _ in 0..20 {
        let tx = match contract
            .proposal(function, args)
            .expect("build the proposal")
            .endorse()
            .await
        {
            Ok(tx) => tx,
            Err(e) if e.is_endorsement_mismatch() => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => panic!("endorse {function} {args:?}: {e}"),
        };
        let commit = tx
            .submit()
            .await
            .unwrap_or_else(|e| panic!("submit {function} {args:?}: {e}"));
        let status = commit
            .status()
            .await
            .unwrap_or_else(|e| panic!("commit status of {function} {args:?}: {e}"));
        assert!(status.is_valid(), "{function} {args:?}: {status:?}");
        return (commit.tx_id().to_owned(), status.block_number);
    }
    panic!("the endorsing peers kept disagreeing on {function} {args:?}");
}

/// Creates assets `<prefix>-0` … `<prefix>-<count - 1>` all at once (so several may share a
/// block); their transaction ids and blocks.
async fn create_assets(contract: &Contract, prefix: &str, count: usize) -> Vec<(String, u64)> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let contract = contract.clone();
            let id = format!("{prefix}-{i}");
            tokio::spawn(async move {
                submit(
                    &contract,
                    "CreateAsset",
                    &[&id, "green", "3", "Carol", "50"],
                )
                .await
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("a submitting task"));
    }
    out
}

/// The next chaincode event, within [`EVENT_TIMEOUT`].
async fn next_event(events: &mut ChaincodeEvents) -> ChaincodeEvent {
    tokio::time::timeout(EVENT_TIMEOUT, events.next())
        .await
        .expect("an event within the timeout")
        .expect("the event stream")
        .expect("the peer keeps the stream open")
}

/// `msp_id`'s peer in network.json: endpoint, TLS CA certificate, server name.
fn peer_of(dir: &Path, network: &serde_json::Value, msp_id: &str) -> (String, Vec<u8>, String) {
    let peer = network["organizations"]
        .as_array()
        .and_then(|orgs| orgs.iter().find(|o| o["mspId"] == msp_id))
        .map(|org| &org["peers"][0])
        .unwrap_or_else(|| panic!("network.json has no {msp_id}"));
    let field = |name: &str| peer[name].as_str().expect("a peer field").to_owned();
    let tls_ca = std::fs::read(dir.join(field("tlsCaCert"))).expect("read the peer's TLS CA");
    (field("endpoint"), tls_ca, field("serverName"))
}

#[tokio::test(flavor = "multi_thread")]
async fn chaincode_events_resume_after_a_restart_from_the_checkpoint_with_none_lost_or_repeated() {
    let (net, json) = support::UpNetwork::start("sdk-chaincode-events");
    support::keep_panic_messages_in(&net.dir);
    let checkpoint_file = net.dir.join("basic-events.checkpoint");
    let retailer = support::user_gateway(&net.dir, &json, "RetailerMSP").await;
    let network = retailer.network(CHANNEL);

    // Listening from the next commit, then six transactions at once.
    let mut events = network
        .chaincode_events(CHAINCODE, EventsOptions::new())
        .await
        .expect("listen to basic's events");
    let first = create_assets(&network.contract(CHAINCODE), "first", 6).await;
    let mut seen = Vec::new();
    while seen.len() < first.len() {
        seen.push(next_event(&mut events).await);
    }
    for event in &seen {
        let (_, block) = first
            .iter()
            .find(|(tx_id, _)| *tx_id == event.tx_id)
            .unwrap_or_else(|| panic!("an event of a transaction not submitted: {event:?}"));
        assert_eq!(event.block_number, *block, "{event:?}");
        assert_eq!(event.chaincode, CHAINCODE);
        assert_eq!(event.event_name, "CreateAsset");
        let asset: serde_json::Value =
            serde_json::from_slice(&event.payload).expect("the event carries the asset's JSON");
        assert_eq!(asset["Owner"], "Carol", "{asset}");
    }
    let blocks: Vec<u64> = seen.iter().map(|e| e.block_number).collect();
    assert!(
        blocks.is_sorted(),
        "events arrive in ledger order: {blocks:?}"
    );

    // The application processed events up to one followed by another of the same block (so
    // the restart resumes inside that block), or the first one when no block holds two.
    let processed = (0..seen.len() - 1)
        .find(|&i| seen[i].block_number == seen[i + 1].block_number)
        .unwrap_or(0);
    eprintln!(
        "[test] events in blocks {blocks:?}; processed through #{processed}, in block {}",
        seen[processed].block_number
    );
    let mut checkpointer = FileCheckpointer::open(&checkpoint_file).expect("open the checkpoint");
    assert_eq!(checkpointer.checkpoint(), None);
    for event in &seen[..=processed] {
        checkpointer
            .checkpoint_chaincode_event(event)
            .expect("save the checkpoint");
    }
    // The application stops; while it is down, another organization's client transacts.
    drop(events);
    drop(retailer);
    drop(checkpointer);
    let community = support::user_gateway(&net.dir, &json, "CommunityMSP").await;
    let second = create_assets(&community.network(CHANNEL).contract(CHAINCODE), "second", 4).await;

    // Restarted, it resumes from the saved checkpoint (the start block is only for a first
    // run): the events it had not processed, then the new ones, each once.
    let checkpointer = FileCheckpointer::open(&checkpoint_file).expect("reopen the checkpoint");
    assert_eq!(
        checkpointer.checkpoint(),
        Some(Checkpoint::after_event(&seen[processed]))
    );
    let retailer = support::user_gateway(&net.dir, &json, "RetailerMSP").await;
    let mut events = retailer
        .network(CHANNEL)
        .chaincode_events(
            CHAINCODE,
            EventsOptions::new()
                .start_block(0)
                .checkpoint(checkpointer.checkpoint()),
        )
        .await
        .expect("listen again");
    let unprocessed = &seen[processed + 1..];
    let mut resumed = Vec::new();
    while resumed.len() < unprocessed.len() + second.len() {
        resumed.push(next_event(&mut events).await);
    }
    assert_eq!(
        &resumed[..unprocessed.len()],
        unprocessed,
        "the events not processed before the restart come first, in order"
    );
    let mut new_ids: Vec<&str> = resumed[unprocessed.len()..]
        .iter()
        .map(|e| e.tx_id.as_str())
        .collect();
    let mut expected: Vec<&str> = second.iter().map(|(tx_id, _)| tx_id.as_str()).collect();
    new_ids.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        new_ids, expected,
        "then each transaction committed while the application was down, once"
    );
}

/// A signer outside the SDK: a private key inside a wrapper, standing in for an HSM. Like many
/// devices it does not normalise its signatures to low-S; it counts what it signs.
struct DeviceKey {
    key: SigningIdentity,
    signatures: AtomicUsize,
}

impl Signer for DeviceKey {
    fn msp_id(&self) -> &str {
        self.key.msp_id()
    }

    fn cert_pem(&self) -> &[u8] {
        self.key.cert_pem()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.signatures.fetch_add(1, Ordering::SeqCst);
        Ok(gridledger_identity::signature::to_high_s(
            &self.key.sign(message),
        )?)
    }
}

/// The ids and creators of a block's transactions.
fn transactions_of(block: &common::Block) -> Vec<(String, Vec<u8>)> {
    block
        .data
        .as_ref()
        .map(|d| d.data.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|bytes| {
            let envelope = common::Envelope::decode(bytes.as_slice()).expect("an envelope");
            let payload = common::Payload::decode(envelope.payload.as_slice()).expect("payload");
            let header = payload.header.expect("a header");
            let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice())
                .expect("a channel header");
            let signature_header =
                common::SignatureHeader::decode(header.signature_header.as_slice())
                    .expect("a signature header");
            (channel_header.tx_id, signature_header.creator)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn block_events_resume_from_a_checkpoint_and_a_signer_outside_the_sdk_submits() {
    let (net, json) = support::UpNetwork::start("sdk-block-events");
    support::keep_panic_messages_in(&net.dir);
    let checkpoint_file = net.dir.join("blocks.checkpoint");
    let retailer = support::user_gateway(&net.dir, &json, "RetailerMSP").await;
    let market = retailer.network(CHANNEL);
    let (tx_x, block_x) = submit(
        &market.contract(CHAINCODE),
        "CreateAsset",
        &["x", "red", "1", "Dave", "10"],
    )
    .await;

    // A block listener processes the block holding X, checkpoints it, and stops.
    let mut blocks = market
        .block_events(EventsOptions::new().start_block(block_x))
        .await
        .expect("listen to blocks");
    let block = tokio::time::timeout(EVENT_TIMEOUT, blocks.next())
        .await
        .expect("a block within the timeout")
        .expect("the block stream")
        .expect("a block");
    assert_eq!(block.header.as_ref().map(|h| h.number), Some(block_x));
    assert!(
        transactions_of(&block).iter().any(|(id, _)| *id == tx_x),
        "block {block_x} holds X"
    );
    let mut checkpointer = FileCheckpointer::open(&checkpoint_file).expect("open");
    checkpointer
        .checkpoint_block(block_x)
        .expect("save the checkpoint");
    drop(blocks);

    // Meanwhile a community member whose key is in a device submits two transactions.
    let base = net
        .dir
        .join("crypto/organizations/CommunityMSP/users/User1/msp");
    let device = Arc::new(DeviceKey {
        key: SigningIdentity::load(
            "CommunityMSP",
            &base.join("signcerts/cert.pem"),
            &base.join("keystore/key.pem"),
        )
        .expect("the community user's key"),
        signatures: AtomicUsize::new(0),
    });
    let (endpoint, tls_ca, server_name) = peer_of(&net.dir, &json, "CommunityMSP");
    let community = Gateway::connect(&endpoint, &tls_ca, &server_name, device.clone())
        .await
        .expect("connect with the device's signer");
    let contract = community.network(CHANNEL).contract(CHAINCODE);
    let (tx_y, _) = submit(&contract, "CreateAsset", &["y", "red", "2", "Erin", "20"]).await;
    let (tx_z, block_z) = submit(&contract, "CreateAsset", &["z", "red", "3", "Frank", "30"]).await;
    assert!(
        device.signatures.load(Ordering::SeqCst) >= 4,
        "the device signed each proposal and transaction"
    );
    let exists = contract
        .evaluate("AssetExists", &["z"])
        .await
        .expect("evaluate as the device's identity");
    assert_eq!(exists, b"true");

    // The listener restarts from its checkpoint: the block after X's, then every block to Z's,
    // in sequence; Y and Z are there, created by the device's identity.
    let checkpoint = FileCheckpointer::open(&checkpoint_file)
        .expect("reopen")
        .checkpoint();
    assert_eq!(checkpoint, Some(Checkpoint::after_block(block_x)));
    let options = EventsOptions::new().start_block(0).checkpoint(checkpoint);
    let mut blocks = market
        .block_events(options.clone())
        .await
        .expect("listen again");
    let mut numbers = Vec::new();
    let mut creators = std::collections::BTreeMap::new();
    while numbers.last() != Some(&block_z) {
        let block = tokio::time::timeout(EVENT_TIMEOUT, blocks.next())
            .await
            .expect("a block within the timeout")
            .expect("the block stream")
            .expect("a block");
        numbers.push(block.header.as_ref().map_or(0, |h| h.number));
        creators.extend(transactions_of(&block));
    }
    let expected: Vec<u64> = (block_x + 1..=block_z).collect();
    assert_eq!(numbers, expected, "resumed after block {block_x}");
    let device_identity = device.serialized_identity();
    for tx_id in [&tx_y, &tx_z] {
        assert_eq!(
            creators.get(tx_id),
            Some(&device_identity),
            "{tx_id} was created by the device's identity"
        );
    }
    assert!(
        !creators.contains_key(&tx_x),
        "block {block_x} was not delivered again"
    );

    // The filtered form resumes at the same block and shows both VALID.
    let mut filtered = market
        .filtered_block_events(options)
        .await
        .expect("listen to filtered blocks");
    let mut codes = std::collections::BTreeMap::new();
    let mut first = None;
    loop {
        let block = tokio::time::timeout(EVENT_TIMEOUT, filtered.next())
            .await
            .expect("a filtered block within the timeout")
            .expect("the filtered block stream")
            .expect("a filtered block");
        first.get_or_insert(block.number);
        for tx in &block.filtered_transactions {
            codes.insert(tx.txid.clone(), tx.tx_validation_code);
        }
        if block.number == block_z {
            break;
        }
    }
    assert_eq!(first, Some(block_x + 1));
    let valid = protos::TxValidationCode::Valid as i32;
    assert_eq!(codes.get(&tx_y), Some(&valid));
    assert_eq!(codes.get(&tx_z), Some(&valid));
}
