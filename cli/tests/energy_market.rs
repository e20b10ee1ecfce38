//! The energy market end to end on the network `gridledger up` runs: payment issued by the
//! market organizations' admins, offers, a bid and concurrent trades on `market` (each certified
//! by the DSO's peer), smart-meter readings recorded by the DSO's meters on the bilateral channels
//! `meter-retailer` and `meter-community`, DSO attestations checked by the endorsers against
//! those readings, settlement and burning — then, from the committed blocks, both conservation
//! laws at every height, and from the files on disk, that the market channel holds no meter
//! reading. Erasure: purged readings leave no byte on any node, their hash stays, and an
//! attestation made before the purge still verifies against the readings and salt kept off the
//! ledger.
//!
//! Trading happens at the real time for a delivery period a few hours ahead; readings and
//! attestations are timestamped just after that period (the SDK's `Contract::at`), as a client
//! replaying the day would, since the chaincodes read a transaction's time from its proposal.

mod support;
use support::energy::{ENERGY, apply_block, check_conservation, energy_writes, json, number};
use support::{UpNetwork, contains, files, gateway_as, quiet_period};

use gridledger_proto::prost::Message;
use gridledger_proto::{common, protos};
use gridledger_sdk::{Contract, Gateway};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MARKET: &str = "market";
const METER: &str = "meter";
/// How often a transaction is endorsed again after losing an MVCC conflict or meeting peers
/// at different heights.
const ATTEMPTS: usize = 40;

/// What became of a transaction.
#[derive(Debug)]
enum Decision {
    /// Committed VALID in this block.
    Committed(u64),
    /// Refused at endorsement, with the error the client saw.
    Refused(String),
}

/// Endorses, submits and awaits `args` (function first) on `contract` with `transient` data and
/// the `orgs` chosen to endorse (none: the Gateway's plan), endorsing again when the endorsing
/// peers were not at the same height ("ProposalResponsePayloads do not match") or the
/// transaction lost an MVCC conflict, as a client would.
async fn decide(
    contract: &Contract,
    args: &[&str],
    transient: &[(&str, &[u8])],
    orgs: &[&str],
) -> Decision {
    let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
    let transient: BTreeMap<String, Vec<u8>> = transient
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
        .collect();
    let orgs: Vec<String> = orgs.iter().map(|o| (*o).to_owned()).collect();
    for _ in 0..ATTEMPTS {
        let proposal = contract
            .proposal_with(args.clone(), transient.clone(), orgs.clone())
            .expect("build the proposal");
        let tx = match proposal.endorse().await {
            Ok(tx) => tx,
            Err(e) if e.to_string().contains("do not match") => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => return Decision::Refused(e.to_string()),
        };
        let status = tx
            .submit()
            .await
            .expect("submit")
            .status()
            .await
            .expect("commit status");
        if status.is_valid() {
            return Decision::Committed(status.block_number);
        }
        assert_eq!(
            status.code,
            protos::TxValidationCode::MvccReadConflict as i32,
            "{args:?} committed as {status:?}"
        );
    }
    panic!("{args:?} kept conflicting");
}

/// `decide` that must commit.
async fn commit(contract: &Contract, args: &[&str]) -> u64 {
    match decide(contract, args, &[], &[]).await {
        Decision::Committed(block) => block,
        Decision::Refused(e) => panic!("{args:?} refused: {e}"),
    }
}

/// `decide` that must be refused with a message containing `needle`.
async fn refused(contract: &Contract, args: &[&str], needle: &str) {
    match decide(contract, args, &[], &[]).await {
        Decision::Refused(e) => assert!(e.contains(needle), "{args:?}: {e:?} lacks {needle:?}"),
        Decision::Committed(block) => panic!("{args:?} committed in block {block}"),
    }
}

/// The energy namespace's world state after each block of `market`, replayed from the blocks
/// `gateway`'s peer returns through qscc: writes of VALID endorser transactions, in order.
async fn energy_state_per_block(gateway: &Gateway) -> Vec<BTreeMap<String, Vec<u8>>> {
    let qscc = gateway.network(MARKET).contract("qscc");
    let info = common::BlockchainInfo::decode(
        qscc.evaluate("GetChainInfo", &[MARKET])
            .await
            .expect("chain info")
            .as_slice(),
    )
    .expect("BlockchainInfo");
    let mut state = BTreeMap::new();
    let mut per_block = Vec::new();
    for number in 0..info.height {
        let bytes = qscc
            .evaluate("GetBlockByNumber", &[MARKET, &number.to_string()])
            .await
            .expect("a block");
        let block = common::Block::decode(bytes.as_slice()).expect("Block");
        apply_block(&mut state, &block);
        per_block.push(state.clone());
    }
    per_block
}

/// The MSP ids of the endorsers of the transaction in block `number` of `market` that writes
/// `key`, read through `gateway`'s peer's qscc.
async fn endorsers_of_write(gateway: &Gateway, number: u64, key: &str) -> Vec<String> {
    let bytes = gateway
        .network(MARKET)
        .contract("qscc")
        .evaluate("GetBlockByNumber", &[MARKET, &number.to_string()])
        .await
        .expect("the block");
    let block = common::Block::decode(bytes.as_slice()).expect("Block");
    block
        .data
        .map(|d| d.data)
        .unwrap_or_default()
        .iter()
        .map(|envelope| energy_writes(envelope))
        .find(|(writes, _)| writes.iter().any(|(k, _)| k == key))
        .map(|(_, endorsers)| endorsers)
        .unwrap_or_else(|| panic!("no transaction of block {number} writes {key}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_period_settles_from_the_meter_channels_and_conserves_tokens_and_payment() {
    let (mut net, network) = UpNetwork::start("energy-market");
    let dir = net.dir.clone();
    let gw = |msp: &'static str, user: &'static str| {
        let (dir, network) = (dir.clone(), network.clone());
        async move { gateway_as(&dir, &network, msp, user).await }
    };
    let energy = |g: &Gateway| g.network(MARKET).contract(ENERGY);
    // A quiet period (so the DSO's verdicts do not depend on the time of day); readings and
    // attestations come after it.
    let period = quiet_period();
    let p = period.to_string();
    let after = UNIX_EPOCH + Duration::from_secs(period + 900 + 60);

    let admin_r = gw("RetailerMSP", "Admin").await;
    let admin_c = gw("CommunityMSP", "Admin").await;
    let dso = gw("DSOMSP", "User1").await;
    let c001 = gw("CommunityMSP", "Prosumer-C001").await;
    let r001 = gw("RetailerMSP", "Prosumer-R001").await;
    let r002 = gw("RetailerMSP", "Prosumer-R002").await;
    let buyers = [
        gw("RetailerMSP", "Prosumer-R003").await,
        gw("RetailerMSP", "Prosumer-R004").await,
        gw("CommunityMSP", "Prosumer-C003").await,
        gw("CommunityMSP", "Prosumer-C004").await,
    ];
    let buyer_accounts = [
        "RetailerMSP:POD-R003",
        "RetailerMSP:POD-R004",
        "CommunityMSP:POD-C003",
        "CommunityMSP:POD-C004",
    ];

    // Payment: R002 can afford two 100-cent trades, not three; the others plenty.
    commit(
        &energy(&admin_r),
        &["IssuePayment", "RetailerMSP:POD-R002", "250"],
    )
    .await;
    for account in buyer_accounts {
        let admin = if account.starts_with("Retailer") {
            &admin_r
        } else {
            &admin_c
        };
        commit(&energy(admin), &["IssuePayment", account, "10000"]).await;
    }
    commit(&energy(&c001), &["PostOffer", "o1", &p, "20000", "20"]).await;
    commit(&energy(&r001), &["PostOffer", "o2", &p, "10000", "25"]).await;
    // Every buyer's peer has committed the offers and payments before the race starts.
    for (buyer, account) in buyers.iter().zip(buyer_accounts) {
        for (function, args) in [
            ("GetOffer", ["o1", p.as_str()]),
            ("GetOffer", ["o2", p.as_str()]),
            ("Balance", [account, ""]),
        ] {
            let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
            let contract = energy(buyer);
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while contract.evaluate(function, &args).await.map_or(true, |b| {
                function == "Balance" && number(&json(&b), "payment_cents") == 0
            }) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{function} {args:?} not committed"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // No double spend under concurrency: five concurrent 5 kWh trades (100 c each) by a buyer
    // with 250 c — exactly two commit; four buyers racing for 3 kWh each of a 10 kWh offer —
    // exactly three commit.
    let mut tasks = Vec::new();
    for k in 0..5 {
        let contract = energy(&r002);
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("tr002-{k}");
            let decision =
                decide(&contract, &["AcceptOffer", &id, "o1", &p, "5000"], &[], &[]).await;
            (id, decision)
        }));
    }
    for (k, buyer) in buyers.iter().enumerate() {
        let contract = energy(buyer);
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("tb{k}");
            let decision =
                decide(&contract, &["AcceptOffer", &id, "o2", &p, "3000"], &[], &[]).await;
            (id, decision)
        }));
    }
    let (mut r002_trades, mut o2_trades) = (Vec::new(), Vec::new());
    for task in tasks {
        let (id, decision) = task.await.expect("trade task");
        match decision {
            Decision::Committed(_) if id.starts_with("tr002") => r002_trades.push(id),
            Decision::Committed(_) => o2_trades.push(id),
            Decision::Refused(e) if id.starts_with("tr002") => {
                assert!(e.contains("has 50 cents"), "{id}: {e}")
            }
            Decision::Refused(e) => assert!(e.contains("has 1000 Wh left"), "{id}: {e}"),
        }
    }
    r002_trades.sort();
    assert_eq!(r002_trades.len(), 2, "the buyer's balance pays for two");
    assert_eq!(o2_trades.len(), 3, "the offer holds three");
    let balance = json(
        &energy(&r002)
            .evaluate("Balance", &["RetailerMSP:POD-R002"])
            .await
            .expect("balance"),
    );
    assert_eq!(number(&balance, "payment_cents"), 50);

    // A bid: R003 bids for 3 kWh at 30 c/kWh, its 90 c escrowed at once; R001 sells it 2 kWh —
    // a trade like those from offers, which the DSO's peer certified and endorsed — and R003
    // cancels the rest, getting back the 30 c the remaining 1 kWh held.
    commit(&energy(&buyers[0]), &["PostBid", "b1", &p, "3000", "30"]).await;
    for g in [&dso, &r001, &c001] {
        let contract = energy(g);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while contract.evaluate("GetBid", &["b1", &p]).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "b1 not committed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let bid_block = commit(&energy(&r001), &["AcceptBid", "tbid", "b1", &p, "2000"]).await;
    // Read from the peer that reported the commit: another may not hold the block yet.
    let endorsers = endorsers_of_write(&r001, bid_block, &format!("trade/{period:012}/tbid")).await;
    assert!(
        endorsers.iter().any(|m| m == "DSOMSP"),
        "the bid's trade was endorsed by {endorsers:?}"
    );
    let bid_trade = json(
        &energy(&r001)
            .evaluate("GetTrade", &["tbid", &p])
            .await
            .expect("the bid's trade"),
    );
    assert_eq!(
        (
            bid_trade["seller"].as_str(),
            bid_trade["buyer"].as_str(),
            bid_trade["bid_id"].as_str(),
            number(&bid_trade, "escrow_cents")
        ),
        (
            Some("RetailerMSP:POD-R001"),
            Some("RetailerMSP:POD-R003"),
            Some("b1"),
            60
        )
    );
    commit(&energy(&buyers[0]), &["CancelBid", "b1", &p]).await;
    let cancelled = json(
        &energy(&buyers[0])
            .evaluate("GetBid", &["b1", &p])
            .await
            .expect("the cancelled bid"),
    );
    assert_eq!(
        (
            cancelled["remaining_wh"].as_u64(),
            cancelled["escrow_cents"].as_u64(),
            cancelled["status"].as_str()
        ),
        (Some(1000), Some(0), Some("cancelled"))
    );

    // Gate closure, someone else's offer, a meter trading, a user without a POD: refused.
    refused(
        &energy(&r002).at(UNIX_EPOCH + Duration::from_secs(period - 200)),
        &["AcceptOffer", "late", "o1", &p, "10"],
        "gate closure",
    )
    .await;
    refused(
        &energy(&buyers[0]),
        &["CancelOffer", "o2", &p],
        "only the seller RetailerMSP:POD-R001",
    )
    .await;
    let meter_r001 = gw("DSOMSP", "Meter-R001").await;
    refused(
        &energy(&meter_r001),
        &["PostOffer", "o3", &p, "100", "1"],
        "a meter of POD-R001",
    )
    .await;
    refused(
        &energy(&gw("RetailerMSP", "User1").await),
        &["AcceptOffer", "t-user", "o1", &p, "10"],
        "no `pod` attribute",
    )
    .await;

    // The meters report the period on their bilateral channels: C001 delivered 8 of the 10 kWh
    // it sold, R001 all 11 (9 from its offer, 2 to R003's bid).
    let readings: [(&str, &str, &str, &str); 7] = [
        ("Meter-C001", "meter-community", "0", "8000"),
        ("Meter-R001", "meter-retailer", "0", "11000"),
        ("Meter-R002", "meter-retailer", "12000", "0"),
        ("Meter-R003", "meter-retailer", "5000", "0"),
        ("Meter-R004", "meter-retailer", "3000", "0"),
        ("Meter-C003", "meter-community", "3000", "0"),
        ("Meter-C004", "meter-community", "3000", "0"),
    ];
    for (meter, channel, import, export) in readings {
        let g = gw("DSOMSP", meter).await;
        let contract = g.network(channel).contract(METER).at(after);
        let salt = format!("salt-of-{meter}-{period}");
        let args = ["RecordReading", p.as_str(), import, export];
        if let Decision::Refused(e) =
            decide(&contract, &args, &[("salt", salt.as_bytes())], &[]).await
        {
            panic!("{meter} reading refused: {e}");
        }
    }
    // Only the channel's members read it: the community's identities are refused on
    // meter-retailer, even through the retailer's peer.
    let refusal = gateway_for_peer_of(&dir, &network, "RetailerMSP", "CommunityMSP", "User1")
        .await
        .network("meter-retailer")
        .contract(METER)
        .evaluate("GetPodReadings", &["POD-R002", &p])
        .await
        .expect_err("a community identity does not read the retailer's meters");
    assert!(
        refusal.to_string().contains("not a member of this channel"),
        "{refusal}"
    );

    // The DSO attests each account against the meters, endorsed by the DSO and the account's
    // organization — both members of the meter channel.
    let salt: &[u8] = b"salt-of-this-period-0001";
    let attest_as = dso.network(MARKET).contract(ENERGY).at(after);
    let attest = |account: &'static str, export: &'static str, import: &'static str| {
        let contract = attest_as.clone();
        let p = p.clone();
        async move {
            let org = account.split(':').next().expect("an MSP");
            decide(
                &contract,
                &["Attest", &p, account, export, import],
                &[("salt", salt)],
                &["DSOMSP", org],
            )
            .await
        }
    };
    match attest("CommunityMSP:POD-C001", "10000", "0").await {
        Decision::Refused(e) => assert!(
            e.contains("differ from the metered 8000 Wh / 0 Wh on meter-community"),
            "{e}"
        ),
        other => panic!("an attestation above the metered export was {other:?}"),
    }
    let attested = [
        ("CommunityMSP:POD-C001", "8000", "0"),
        ("RetailerMSP:POD-R001", "11000", "0"),
        ("RetailerMSP:POD-R002", "0", "12000"),
        ("RetailerMSP:POD-R003", "0", "5000"),
        ("RetailerMSP:POD-R004", "0", "3000"),
        ("CommunityMSP:POD-C003", "0", "3000"),
        ("CommunityMSP:POD-C004", "0", "3000"),
    ];
    for (account, export, import) in attested {
        if let Decision::Refused(e) = attest(account, export, import).await {
            panic!("attesting {account}: {e}");
        }
    }
    // Whoever holds the readings and the salt can check the commitment.
    let readings = dso
        .network("meter-community")
        .contract(METER)
        .evaluate("GetPodReadings", &["POD-C001", &p])
        .await
        .expect("the readings");
    let mut committed = salt.to_vec();
    committed.extend(&readings);
    let expected: String = gridledger_proto::blockutil::sha256(&committed)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let state = energy_state_per_block(&dso).await;
    let last = state.last().expect("blocks");
    let attestation = json(&last[&format!("attestation/{period:012}/CommunityMSP:POD-C001")]);
    assert_eq!(attestation["commitment"], expected.as_str());

    // Settlement and burning.
    let settle = dso.network(MARKET).contract(ENERGY).at(after);
    let bid_trades = ["tbid".to_string()];
    for id in r002_trades.iter().chain(&o2_trades).chain(&bid_trades) {
        commit(&settle, &["Settle", id, &p]).await;
    }
    for account in ["RetailerMSP:POD-R002"].into_iter().chain(buyer_accounts) {
        commit(&settle, &["Burn", &p, account]).await;
    }
    // C001 delivered 8 of R002's 10 kWh: the first trade whole, the second 3 of 5 kWh.
    // Queried on the DSO's peer, which reported those commits.
    let trade = |id: &str| {
        let contract = energy(&dso);
        let (id, p) = (id.to_owned(), p.clone());
        async move {
            json(
                &contract
                    .evaluate("GetTrade", &[&id, &p])
                    .await
                    .expect("trade"),
            )
        }
    };
    let first = trade(&r002_trades[0]).await;
    let second = trade(&r002_trades[1]).await;
    let delivered = number(&first, "delivered_wh") + number(&second, "delivered_wh");
    assert_eq!(delivered, 8000);
    assert_eq!(
        number(&first, "imbalance_wh") + number(&second, "imbalance_wh"),
        2000
    );
    assert_eq!(
        number(&first, "paid_cents") + number(&second, "paid_cents"),
        160
    );
    // The bid's trade settles like the others: R001 had the 2 kWh left, paid 60 c.
    let settled = trade("tbid").await;
    assert_eq!(
        (
            number(&settled, "delivered_wh"),
            number(&settled, "paid_cents"),
            number(&settled, "refunded_cents")
        ),
        (2000, 60, 0)
    );
    let supply = json(&energy(&dso).evaluate("Supply", &[]).await.expect("supply"));
    assert_eq!(number(&supply, "minted_wh"), 19000);
    assert_eq!(
        number(&supply, "burned_wh"),
        19000,
        "every delivered Wh was consumed"
    );

    // Both conservation laws hold after every block, replayed from the ledger.
    let per_block = energy_state_per_block(&dso).await;
    eprintln!("[test] conservation checked at {} heights", per_block.len());
    for (height, state) in per_block.iter().enumerate() {
        check_conservation(height + 1, state);
    }

    // On disk, the market channel holds no meter reading: no meter id, no meter identity, no
    // reading record — while the meter channel's files do (so the search can find them).
    net.stop_up();
    let meter_cert = std::fs::read_to_string(
        dir.join("crypto/organizations/DSOMSP/users/Meter-R002/msp/signcerts/cert.pem"),
    )
    .expect("the meter's certificate");
    let cert_line = meter_cert
        .lines()
        .nth(3)
        .expect("a PEM body line")
        .to_owned();
    let markers: Vec<Vec<u8>> = vec![
        b"M-R002".to_vec(),
        b"M-C001".to_vec(),
        b"\"interval_start\"".to_vec(),
        format!("reading/M-R002/{period:012}").into_bytes(),
        cert_line.into_bytes(),
    ];
    let retailer_meter_files =
        files(&dir.join("nodes/peer0.retailer/data/channels/meter-retailer"));
    for marker in &markers[..1] {
        assert!(
            retailer_meter_files
                .iter()
                .any(|(_, bytes)| contains(bytes, marker)),
            "the meter channel's ledger holds {:?}",
            String::from_utf8_lossy(marker)
        );
    }
    let mut market_files = Vec::new();
    for node in [
        "peer0.dso",
        "peer0.retailer",
        "peer0.community",
        "orderer0",
        "orderer1",
        "orderer2",
    ] {
        market_files.extend(files(
            &dir.join(format!("nodes/{node}/data/channels/{MARKET}")),
        ));
    }
    assert!(market_files.len() >= 6, "{market_files:?}");
    for (path, bytes) in &market_files {
        for marker in &markers {
            assert!(
                !contains(bytes, marker),
                "{path} holds {:?}",
                String::from_utf8_lossy(marker)
            );
        }
    }
}

/// A Gateway to `peer_msp`'s peer signing as `user` of `user_msp`.
async fn gateway_for_peer_of(
    dir: &Path,
    network: &serde_json::Value,
    peer_msp: &str,
    user_msp: &str,
    user: &str,
) -> Gateway {
    let org = network["organizations"]
        .as_array()
        .and_then(|orgs| orgs.iter().find(|o| o["mspId"] == peer_msp))
        .expect("the peer's organization");
    let peer = &org["peers"][0];
    let base = dir.join(format!("crypto/organizations/{user_msp}/users/{user}/msp"));
    let signer = gridledger_identity::SigningIdentity::load(
        user_msp,
        &base.join("signcerts/cert.pem"),
        &base.join("keystore/key.pem"),
    )
    .expect("the user");
    let tls_ca = std::fs::read(dir.join(peer["tlsCaCert"].as_str().expect("a path")))
        .expect("the peer's TLS CA");
    Gateway::connect(
        peer["endpoint"].as_str().expect("endpoint"),
        &tls_ca,
        peer["serverName"].as_str().expect("serverName"),
        signer,
    )
    .await
    .expect("connect")
}

#[tokio::test(flavor = "multi_thread")]
async fn erased_readings_leave_no_byte_on_any_node_their_hash_stays_and_attestations_still_verify()
{
    let (net, network) = UpNetwork::start("energy-erasure");
    let dir = net.dir.clone();
    let meter = gateway_as(&dir, &network, "DSOMSP", "Meter-R001").await;
    let dso = gateway_as(&dir, &network, "DSOMSP", "User1").await;
    let retailer = gateway_as(&dir, &network, "RetailerMSP", "User1").await;
    let period = quiet_period();
    let after = UNIX_EPOCH + Duration::from_secs(period + 4 * 900);
    // A salt no other byte string on the nodes contains: what to look for afterwards.
    let salt = format!(
        "erasure-test-salt-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    let salt_hex: String = salt.bytes().map(|b| format!("{b:02x}")).collect();
    let contract = meter.network("meter-retailer").contract(METER).at(after);
    // A reading dated before the meter's certificate was issued is refused at once, with the
    // reason: committing peers validate the creator at the transaction's time.
    let backdated = meter
        .network("meter-retailer")
        .contract(METER)
        .at(UNIX_EPOCH + Duration::from_secs(period - 86_400 * 3 + 900));
    let start = (period - 86_400 * 3).to_string();
    match decide(
        &backdated,
        &["RecordReading", &start, "1", "0"],
        &[("salt", salt.as_bytes())],
        &[],
    )
    .await
    {
        Decision::Refused(e) => assert!(e.contains("at the proposal's timestamp"), "{e}"),
        Decision::Committed(block) => panic!("a backdated reading committed in block {block}"),
    }
    for i in 0..3u64 {
        let start = (period + 900 * i).to_string();
        let import = (1000 + i).to_string();
        match decide(
            &contract,
            &["RecordReading", &start, &import, "0"],
            &[("salt", salt.as_bytes())],
            &[],
        )
        .await
        {
            Decision::Committed(_) => {}
            Decision::Refused(e) => panic!("reading {i} refused: {e}"),
        }
    }
    let p = period.to_string();
    let read = dso.network("meter-retailer").contract(METER);
    let stored = read
        .evaluate("GetReading", &["M-R001", &p])
        .await
        .expect("the reading");
    let value_hash: String = gridledger_proto::blockutil::sha256(&stored)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let node_files = || {
        let mut all = Vec::new();
        for node in [
            "peer0.dso",
            "peer0.retailer",
            "peer0.community",
            "orderer0",
            "orderer1",
            "orderer2",
        ] {
            all.extend(files(&dir.join(format!("nodes/{node}/data"))));
        }
        all
    };
    let holders = |needle: &str| -> Vec<String> {
        node_files()
            .into_iter()
            .filter(|(_, bytes)| contains(bytes, needle.as_bytes()))
            .map(|(path, _)| path)
            .collect()
    };
    // Both parties' peers hold the values (and nobody else does).
    let before = holders(&salt_hex);
    assert!(
        before.iter().any(|p| p.contains("peer0.dso/"))
            && before.iter().any(|p| p.contains("peer0.retailer/")),
        "the values are on both parties' peers: {before:?}"
    );
    assert!(
        before
            .iter()
            .all(|p| p.contains("/channels/meter-retailer/")),
        "and only in the meter channel's ledgers: {before:?}"
    );

    // Before the erasure, the DSO attests the first interval on `market`: the attestation
    // commits to the readings with a salt of the DSO's, kept off the ledger like the readings
    // it keeps in its own records (here: `kept`).
    let attestation_salt: &[u8] = b"attestation-salt-kept-off-ledger";
    let kept = read
        .evaluate("GetPodReadings", &["POD-R001", &p])
        .await
        .expect("the readings the attestation covers");
    let attest = dso.network(MARKET).contract(ENERGY).at(after);
    match decide(
        &attest,
        &["Attest", &p, "RetailerMSP:POD-R001", "0", "1000"],
        &[("salt", attestation_salt)],
        &["DSOMSP", "RetailerMSP"],
    )
    .await
    {
        Decision::Committed(_) => {}
        Decision::Refused(e) => panic!("the attestation was refused: {e}"),
    }

    // The customer asks to be forgotten: the DSO erases the first two intervals.
    let erase = dso.network("meter-retailer").contract(METER).at(after);
    let to = (period + 1800).to_string();
    match decide(
        &erase,
        &[
            "EraseReadings",
            "M-R001",
            &p,
            &to,
            "erasure request of the customer at POD-R001",
        ],
        &[],
        &[],
    )
    .await
    {
        Decision::Committed(_) => {}
        Decision::Refused(e) => panic!("erasure refused: {e}"),
    }
    // Both peers have committed the erasure.
    for g in [&dso, &retailer] {
        let contract = g.network("meter-retailer").contract(METER);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let record = json(
                &contract
                    .evaluate("GetRecord", &["M-R001", &p])
                    .await
                    .expect("record"),
            );
            if !record["erased"].is_null() {
                assert_eq!(
                    record["erased"]["value_hash"],
                    value_hash.as_str(),
                    "the hash stays as evidence"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the erasure did not commit"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let refusal = contract
            .evaluate("GetReading", &["M-R001", &p])
            .await
            .expect_err("an erased reading is not served");
        assert!(refusal.to_string().contains("was erased"), "{refusal}");
    }
    // The third reading is still there, so the salt still is too — in exactly one value per
    // peer; the erased values' bytes are nowhere: search for each erased reading's own bytes.
    let third = (period + 1800).to_string();
    read.evaluate("GetReading", &["M-R001", &third])
        .await
        .expect("the reading after the erased range stays");
    let left = holders(&String::from_utf8_lossy(&stored));
    assert!(left.is_empty(), "the erased reading is still in {left:?}");
    let second = format!("\"interval_start\":{},\"import_wh\":1001", period + 900);
    let left = holders(&second);
    assert!(
        left.is_empty(),
        "the second erased reading is still in {left:?}"
    );

    // The attestation made before the erasure still verifies: the meter channel no longer
    // serves the attested interval's readings, but whoever kept them and the salt recomputes
    // the commitment exactly as `energy`'s Attest made it, SHA-256(salt ‖ readings).
    let served = read
        .evaluate("GetPodReadings", &["POD-R001", &p])
        .await
        .expect("the POD's readings");
    assert_eq!(
        json(&served),
        serde_json::json!([]),
        "nothing left to serve"
    );
    let left = holders(&String::from_utf8_lossy(&kept));
    assert!(left.is_empty(), "the kept readings are still in {left:?}");
    let attestation = json(
        &dso.network(MARKET)
            .contract(ENERGY)
            .evaluate("GetAttestation", &[&p, "RetailerMSP:POD-R001"])
            .await
            .expect("the attestation stays on market"),
    );
    let mut committed = attestation_salt.to_vec();
    committed.extend(&kept);
    let recomputed: String = gridledger_proto::blockutil::sha256(&committed)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(attestation["commitment"], recomputed.as_str());
    // And it binds those readings: other values do not verify.
    let altered = String::from_utf8_lossy(&kept).replace("\"import_wh\":1000", "\"import_wh\":999");
    assert_ne!(
        altered.as_bytes(),
        kept.as_slice(),
        "the kept readings name 1000 Wh"
    );
    let mut forged = attestation_salt.to_vec();
    forged.extend(altered.as_bytes());
    let forged: String = gridledger_proto::blockutil::sha256(&forged)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_ne!(attestation["commitment"], forged.as_str());
}
