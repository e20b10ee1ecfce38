//! The DSO's feasibility endorsement on the IEEE 33-bus feeder: trades mapped from points of
//! delivery to buses, a refusal that names the violated limit, reservations that stop two
//! concurrently endorsed trades from together overloading a line and are released when their
//! transaction commits (valid or not) or expires, periods kept apart, unknown points of
//! delivery and other chaincodes, bad configuration, and the verdicts counted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gridledger_chaincode::energy::Trade;
use gridledger_ledger::{Ledger, StateSnapshot};
use gridledger_peer::feasibility::{FeasibilityCheck, FeasibilityConfig, PodEntry};
use gridledger_proto::kvrwset::{KvWrite, KvrwSet};
use gridledger_proto::prost::Message;
use gridledger_proto::protos::TxValidationCode;
use gridledger_proto::rwset::{NsReadWriteSet, TxReadWriteSet};

/// 2026-11-26 13:00 UTC.
const PERIOD: i64 = 1_795_698_000;

fn feeder_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../grid/feeders/ieee33.json")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gridledger-feasibility-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

fn config() -> FeasibilityConfig {
    FeasibilityConfig {
        channel: "market".into(),
        chaincode: "energy".into(),
        feeder: feeder_path(),
        load_profile: None,
        load_scale: 0.3,
        reservation_seconds: 60,
        pods: BTreeMap::from([
            ("POD-NEAR".to_string(), PodEntry::Bus(1)),
            ("POD-LATERAL".to_string(), PodEntry::Bus(22)),
            ("POD-FAR".to_string(), PodEntry::Bus(17)),
            (
                "POD-COMMUNITY".to_string(),
                PodEntry::Supplied {
                    bus: 25,
                    supplier: "CommunityMSP".into(),
                },
            ),
        ]),
    }
}

/// A trade of `energy_wh` in period `period` from `seller_pod` to `buyer_pod`.
fn trade(id: &str, period: i64, seller_pod: &str, buyer_pod: &str, energy_wh: u64) -> Trade {
    Trade {
        id: id.into(),
        offer_id: "o1".into(),
        bid_id: String::new(),
        seller: format!("CommunityMSP:{seller_pod}"),
        seller_pod: seller_pod.into(),
        buyer: format!("RetailerMSP:{buyer_pod}"),
        buyer_pod: buyer_pod.into(),
        period,
        energy_wh,
        price_cents_per_kwh: 20,
        escrow_cents: 0,
        status: "escrowed".into(),
        delivered_wh: 0,
        paid_cents: 0,
        refunded_cents: 0,
        imbalance_wh: 0,
    }
}

/// The id of the transaction that carries `trade` in these tests.
fn tx_of(trade: &Trade) -> String {
    format!("tx-{}", trade.id)
}

/// The DSO's review of `trade` written by `energy` on `market`, in its own transaction.
fn review(check: &FeasibilityCheck, trade: &Trade, state: &StateSnapshot) -> Result<(), String> {
    check.review(
        "market",
        "energy",
        &tx_of(trade),
        &rwset("energy", trade),
        state,
    )
}

/// The read-write set of an `AcceptOffer` that writes `trade`.
fn rwset(namespace: &str, trade: &Trade) -> TxReadWriteSet {
    let kv = KvrwSet {
        writes: vec![KvWrite {
            key: format!("trade/{:012}/{}", trade.period, trade.id),
            is_delete: false,
            value: serde_json::to_vec(trade).expect("trade JSON"),
        }],
        ..Default::default()
    };
    TxReadWriteSet {
        data_model: 0,
        ns_rwset: vec![NsReadWriteSet {
            namespace: namespace.into(),
            rwset: kv.encode_to_vec(),
            collection_hashed_rwset: Vec::new(),
        }],
    }
}

#[test]
fn trades_are_certified_only_while_the_period_stays_within_limits() {
    let dir = scratch("certify");
    let ledger = Ledger::open(&dir, "market").expect("ledger");
    let state = ledger.snapshot().expect("snapshot");
    let check = FeasibilityCheck::load(config()).expect("loads");

    // 3.4 MW from near the substation into the 2-22-23-24 lateral overloads line 21.
    let big = trade("t-big", PERIOD, "POD-NEAR", "POD-LATERAL", 850_000);
    let refusal = review(&check, &big, &state).expect_err("overloads line 21");
    assert!(refusal.contains("overcurrent on line 21"), "{refusal}");
    assert!(refusal.contains("limit of 150"), "{refusal}");

    // Half of it is fine alone and is reserved; a second half then is refused, because the
    // two together overload the line — although neither is committed yet.
    let half = trade("t-1", PERIOD, "POD-NEAR", "POD-LATERAL", 425_000);
    review(&check, &half, &state).expect("half is feasible");
    let other_half = trade("t-2", PERIOD, "POD-NEAR", "POD-LATERAL", 425_000);
    let refusal = review(&check, &other_half, &state).expect_err("together they overload");
    assert!(refusal.contains("2 trades"), "{refusal}");
    // Re-endorsing the same trade does not count it twice.
    review(&check, &half, &state).expect("the same trade again");
    // Another period has its own flows.
    let later = trade("t-3", PERIOD + 900, "POD-NEAR", "POD-LATERAL", 425_000);
    review(&check, &later, &state).expect("another period");

    // A point of delivery the DSO does not know is not certified; other chaincodes and
    // channels are not the DSO's business.
    let unknown = trade("t-4", PERIOD, "POD-NOWHERE", "POD-LATERAL", 1_000);
    let refusal = review(&check, &unknown, &state).expect_err("unknown pod");
    assert!(refusal.contains("POD-NOWHERE"), "{refusal}");
    check
        .review(
            "market",
            "basic",
            &tx_of(&big),
            &rwset("basic", &big),
            &state,
        )
        .expect("not the market chaincode");
    check
        .review(
            "other",
            "energy",
            &tx_of(&big),
            &rwset("energy", &big),
            &state,
        )
        .expect("not the market channel");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_check_of_new_trades_is_counted_by_verdict() {
    let dir = scratch("verdicts");
    let ledger = Ledger::open(&dir, "market").expect("ledger");
    let state = ledger.snapshot().expect("snapshot");
    let check = FeasibilityCheck::load(config()).expect("loads");
    let counter = &gridledger_peer::metrics::get().dso_feasibility_checks;
    let before = ["feasible", "infeasible", "error"].map(|v| counter.get(&[v]));

    let big = trade("t-big", PERIOD, "POD-NEAR", "POD-LATERAL", 850_000);
    let _ = check.review(
        "market",
        "energy",
        &tx_of(&big),
        &rwset("energy", &big),
        &state,
    );
    let small = trade("t-small", PERIOD, "POD-NEAR", "POD-LATERAL", 1_000);
    let _ = check.review(
        "market",
        "energy",
        &tx_of(&small),
        &rwset("energy", &small),
        &state,
    );
    let unknown = trade("t-unknown", PERIOD, "POD-NOWHERE", "POD-LATERAL", 1_000);
    let _ = check.review(
        "market",
        "energy",
        &tx_of(&unknown),
        &rwset("energy", &unknown),
        &state,
    );

    // Other tests of this binary may count too, in parallel: each verdict moved at least once.
    let after = ["feasible", "infeasible", "error"].map(|v| counter.get(&[v]));
    for (i, verdict) in ["feasible", "infeasible", "error"].iter().enumerate() {
        assert!(after[i] > before[i], "{verdict} was not counted");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_load_profile_sets_each_slots_scale_and_bad_configuration_is_refused() {
    let dir = scratch("profile");
    let profile = dir.join("profile.csv");
    let mut text = String::from("minute_of_day,load_scale\n");
    for slot in 0..96 {
        text.push_str(&format!(
            "{},{}\n",
            slot * 15,
            if slot == 52 { 0.9 } else { 0.2 }
        ));
    }
    std::fs::write(&profile, &text).expect("write profile");
    let mut with_profile = config();
    with_profile.load_profile = Some(profile.clone());
    let check = FeasibilityCheck::load(with_profile).expect("loads");
    // 13:00 UTC is slot 52.
    assert_eq!(check.load_scale(PERIOD), 0.9);
    assert_eq!(check.load_scale(PERIOD + 900), 0.2);

    std::fs::write(&profile, "minute_of_day,load_scale\n0,0.5\n").expect("short profile");
    let mut short = config();
    short.load_profile = Some(profile.clone());
    let err = FeasibilityCheck::load(short)
        .err()
        .expect("incomplete profile");
    assert!(
        err.to_string().contains("no load scale for minute 15"),
        "{err}"
    );

    let mut off_feeder = config();
    off_feeder.pods.insert("POD-X".into(), PodEntry::Bus(99));
    let err = FeasibilityCheck::load(off_feeder).err().expect("bus 99");
    assert!(err.to_string().contains("bus 99"), "{err}");

    let mut no_feeder = config();
    no_feeder.feeder = dir.join("missing.json");
    assert!(FeasibilityCheck::load(no_feeder).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_pod_is_traded_only_by_its_registered_supplier() {
    let dir = scratch("supplier");
    let ledger = Ledger::open(&dir, "market").expect("ledger");
    let state = ledger.snapshot().expect("snapshot");
    let check = FeasibilityCheck::load(config()).expect("loads");
    // The test trades are sold by CommunityMSP accounts and bought by RetailerMSP accounts.
    let sold = trade("t-sold", PERIOD, "POD-COMMUNITY", "POD-NEAR", 1_000);
    review(&check, &sold, &state).expect("the community sells for its own POD");
    let bought = trade("t-bought", PERIOD, "POD-NEAR", "POD-COMMUNITY", 1_000);
    let refusal =
        review(&check, &bought, &state).expect_err("a retailer's account at the community's POD");
    assert!(
        refusal.contains("POD-COMMUNITY is supplied by CommunityMSP, not RetailerMSP"),
        "{refusal}"
    );
    assert_eq!(check.bus_of("POD-COMMUNITY"), Some(25));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pods_are_read_as_a_bus_or_a_bus_and_supplier() {
    #[derive(serde::Deserialize)]
    struct Pods {
        pods: BTreeMap<String, PodEntry>,
    }
    let pods: Pods = toml::from_str(
        "[pods]\n\"POD-1\" = 17\n\"POD-2\" = { bus = 3, supplier = \"RetailerMSP\" }\n",
    )
    .expect("both forms");
    assert_eq!(pods.pods["POD-1"], PodEntry::Bus(17));
    assert_eq!(pods.pods["POD-2"].supplier(), Some("RetailerMSP"));
    assert!(toml::from_str::<Pods>("[pods]\n\"POD-3\" = { supplier = \"X\" }\n").is_err());
}

/// Two halves of a transfer into the 2-22-23-24 lateral: each is feasible alone, together they
/// overload line 21.
fn halves() -> (Trade, Trade) {
    (
        trade("t-1", PERIOD, "POD-NEAR", "POD-LATERAL", 425_000),
        trade("t-2", PERIOD, "POD-NEAR", "POD-LATERAL", 425_000),
    )
}

#[test]
fn a_reservation_is_released_when_its_transaction_commits_invalid() {
    let dir = scratch("invalid");
    let ledger = Ledger::open(&dir, "market").expect("ledger");
    let state = ledger.snapshot().expect("snapshot");
    let check = FeasibilityCheck::load(config()).expect("loads");
    let (first, second) = halves();
    check
        .review("market", "energy", "tx-a", &rwset("energy", &first), &state)
        .expect("the first half is feasible");
    let refusal = check
        .review(
            "market",
            "energy",
            "tx-b",
            &rwset("energy", &second),
            &state,
        )
        .expect_err("the first half is reserved");
    assert!(refusal.contains("overcurrent on line 21"), "{refusal}");

    // Blocks that do not carry the reserved trade's transaction, or of another channel, leave
    // the reservation in place.
    assert_eq!(
        check.committed("market", [("tx-other", TxValidationCode::Valid)]),
        0
    );
    assert_eq!(
        check.committed("other", [("tx-a", TxValidationCode::MvccReadConflict)]),
        0
    );
    check
        .review(
            "market",
            "energy",
            "tx-b",
            &rwset("energy", &second),
            &state,
        )
        .expect_err("still reserved");

    // The first half's transaction lost an MVCC conflict: it will never flow, so the second
    // half is certified at once, not after the reservation expires.
    assert_eq!(
        check.committed(
            "market",
            [
                ("tx-other", TxValidationCode::Valid),
                ("tx-a", TxValidationCode::MvccReadConflict)
            ]
        ),
        1
    );
    check
        .review(
            "market",
            "energy",
            "tx-b",
            &rwset("energy", &second),
            &state,
        )
        .expect("the first half's reservation is gone");
    // An endorsement policy failure releases it the same way.
    assert_eq!(
        check.committed(
            "market",
            [("tx-b", TxValidationCode::EndorsementPolicyFailure)]
        ),
        1
    );
    check
        .review("market", "energy", "tx-c", &rwset("energy", &first), &state)
        .expect("nothing is reserved any more");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reservation_is_released_when_its_transaction_commits_valid() {
    let dir = scratch("valid");
    let ledger = Ledger::open(&dir, "market").expect("ledger");
    let state = ledger.snapshot().expect("snapshot");
    let check = FeasibilityCheck::load(config()).expect("loads");
    let (first, second) = halves();
    check
        .review("market", "energy", "tx-a", &rwset("energy", &first), &state)
        .expect("the first half is feasible");
    // Once its transaction committed VALID, the trade is counted from the committed state (a
    // later snapshot, which this test's empty ledger stands in for), not as a reservation.
    assert_eq!(
        check.committed("market", [("tx-a", TxValidationCode::Valid)]),
        1
    );
    assert_eq!(
        check.committed("market", [("tx-a", TxValidationCode::Valid)]),
        0,
        "released once"
    );
    check
        .review(
            "market",
            "energy",
            "tx-b",
            &rwset("energy", &second),
            &state,
        )
        .expect("no reservation counts the first half any more");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reservation_is_released_when_it_expires() {
    let dir = scratch("expiry");
    let ledger = Ledger::open(&dir, "market").expect("ledger");
    let state = ledger.snapshot().expect("snapshot");
    let check = FeasibilityCheck::load(config()).expect("loads");
    let (first, second) = halves();
    let endorsed = Instant::now();
    let at = |seconds: u64| endorsed + Duration::from_secs(seconds);
    check
        .review_at(
            "market",
            "energy",
            "tx-a",
            &rwset("energy", &first),
            &state,
            endorsed,
        )
        .expect("the first half is feasible");
    // config() reserves for 60 s: the transaction never commits.
    check
        .review_at(
            "market",
            "energy",
            "tx-b",
            &rwset("energy", &second),
            &state,
            at(59),
        )
        .expect_err("reserved for 60 s");
    check
        .review_at(
            "market",
            "energy",
            "tx-b",
            &rwset("energy", &second),
            &state,
            at(61),
        )
        .expect("the reservation expired");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_trade_from_a_bid_is_certified_like_one_from_an_offer() {
    let dir = scratch("bid");
    let ledger = Ledger::open(&dir, "market").expect("ledger");
    let state = ledger.snapshot().expect("snapshot");
    let check = FeasibilityCheck::load(config()).expect("loads");
    // `AcceptBid` writes the bid's new remainder and the trade, which names the bid.
    let from_bid = |id: &str, energy_wh: u64| {
        let mut t = trade(id, PERIOD, "POD-NEAR", "POD-LATERAL", energy_wh);
        t.offer_id = String::new();
        t.bid_id = "b1".into();
        let mut set = rwset("energy", &t);
        let mut kv = KvrwSet::decode(set.ns_rwset[0].rwset.as_slice()).expect("KVRWSet");
        kv.writes.insert(
            0,
            KvWrite {
                key: format!("bid/{PERIOD:012}/b1"),
                is_delete: false,
                value: b"{}".to_vec(),
            },
        );
        set.ns_rwset[0].rwset = kv.encode_to_vec();
        (t, set)
    };
    let (big, set) = from_bid("t-big", 850_000);
    let refusal = check
        .review("market", "energy", &tx_of(&big), &set, &state)
        .expect_err("overloads line 21");
    assert!(refusal.contains("trade t-big is not feasible"), "{refusal}");
    assert!(refusal.contains("overcurrent on line 21"), "{refusal}");
    // A bid's half is reserved like an offer's, so an offer's half then overloads the line.
    let (half, set) = from_bid("t-1", 425_000);
    check
        .review("market", "energy", &tx_of(&half), &set, &state)
        .expect("half is feasible");
    let other_half = trade("t-2", PERIOD, "POD-NEAR", "POD-LATERAL", 425_000);
    review(&check, &other_half, &state).expect_err("together they overload");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_committer_reports_each_transaction_of_a_block_with_its_own_code() {
    use gridledger_peer::validation::{BlockUpdates, TxUpdates, ValidatedBlock};
    let dir = scratch("committer");
    let ledger = Ledger::open(&dir, "market").expect("ledger");
    let state = ledger.snapshot().expect("snapshot");
    let check = FeasibilityCheck::load(config()).expect("loads");
    let (first, second) = halves();
    check
        .review("market", "energy", "tx-a", &rwset("energy", &first), &state)
        .expect("the first half is feasible");
    // A block of three: an envelope without a trusted tx id (so no entry in the
    // updates), an unrelated valid transaction, and the first half's, which lost an MVCC
    // conflict. Each transaction's code is found by its position in the block.
    let tx = |tx_num: u64, tx_id: &str, code: TxValidationCode| TxUpdates {
        tx_num,
        tx_id: tx_id.into(),
        validation_code: code as u8,
        ..TxUpdates::default()
    };
    let block = ValidatedBlock {
        codes: vec![
            TxValidationCode::BadPayload,
            TxValidationCode::Valid,
            TxValidationCode::MvccReadConflict,
        ],
        updates: BlockUpdates {
            txs: vec![
                tx(1, "tx-other", TxValidationCode::Valid),
                tx(2, "tx-a", TxValidationCode::MvccReadConflict),
            ],
        },
        config: None,
        private: Vec::new(),
    };
    assert_eq!(
        gridledger_peer::committer::release_reservations(&check, "other", &block),
        0,
        "another channel's block"
    );
    assert_eq!(
        gridledger_peer::committer::release_reservations(&check, "market", &block),
        1
    );
    check
        .review(
            "market",
            "energy",
            "tx-b",
            &rwset("energy", &second),
            &state,
        )
        .expect("the first half's reservation is gone");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Commits `trades` to `ledger`'s world state as `energy` writes them, one transaction each, in
/// the next block.
fn commit_trades(ledger: &Ledger, trades: &[&Trade]) {
    use gridledger_ledger::{BlockUpdates, StateWrite, TxUpdates};
    use gridledger_proto::common::{Block, BlockData, BlockHeader, BlockMetadata};
    let info = ledger.info();
    let data = BlockData {
        data: trades
            .iter()
            .map(|t| format!("envelope of {} in block {}", t.id, info.height).into_bytes())
            .collect(),
    };
    let block = Block {
        header: Some(BlockHeader {
            number: info.height,
            previous_hash: info.current_block_hash.clone(),
            data_hash: gridledger_proto::block_data_hash(&data).to_vec(),
        }),
        data: Some(data),
        metadata: Some(BlockMetadata {
            metadata: vec![Vec::new(); 5],
        }),
    };
    let txs = trades
        .iter()
        .enumerate()
        .map(|(n, t)| TxUpdates {
            tx_num: n as u64,
            tx_id: tx_of(t),
            validation_code: TxValidationCode::Valid as u8,
            writes: vec![StateWrite {
                namespace: "energy".into(),
                key: format!("trade/{:012}/{}", t.period, t.id),
                value: Some(serde_json::to_vec(t).expect("trade JSON")),
            }],
            ..TxUpdates::default()
        })
        .collect();
    ledger
        .commit_block(&block, &BlockUpdates { txs })
        .expect("commit the trades");
}

#[test]
fn committed_trades_count_against_new_ones_and_a_rewritten_trade_is_read_again() {
    let dir = scratch("committed");
    let ledger = Ledger::open(&dir, "market").expect("ledger");
    let check = FeasibilityCheck::load(config()).expect("loads");
    let (first, second) = halves();
    commit_trades(&ledger, &[&first]);
    let state = ledger.snapshot().expect("snapshot");
    review(&check, &second, &state).expect_err("the committed half and the new one overload");
    // Read again (its decoded form kept from the first review): still refused.
    review(&check, &second, &state).expect_err("still overloaded");

    // The committed trade is written again, now small: the next review must read the new
    // value, not the one it decoded before.
    let mut smaller = first.clone();
    smaller.energy_wh = 1_000;
    commit_trades(&ledger, &[&smaller]);
    let state = ledger.snapshot().expect("snapshot");
    review(&check, &second, &state).expect("with the committed trade now small it fits");
    let _ = std::fs::remove_dir_all(&dir);
}
