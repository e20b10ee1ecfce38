//! The `certs` chaincode against an in-memory world state with real identities (crypto material
//! generated like the local consortium's: admins by OU, prosumers by their `pod` attribute,
//! meters by their `meter` attribute): guarantees of origin issued only by the DSO's operators
//! against `energy`'s attestations (read through the same-channel call the peer would run),
//! floored to whole kWh and never twice for the same energy; transfers and cancellations only by
//! the owner, a cancellation exactly once and nothing after it or after expiry; the owner,
//! device and period queries after transfers; and every bad argument refused with its reason.

mod support;
use support::{fails, ok};

use gridledger_chaincode::certs::{Certificate, Certified, GuaranteesOfOrigin, Issuance};
use gridledger_chaincode::energy::{Attestation, EnergyMarket};
use gridledger_chaincode::stub::{ChaincodeHost, ChaincodeStub};
use gridledger_chaincode::{
    Chaincode, Registry, SimulationResult, StateReader, simulate_with_host,
};
use gridledger_proto::kvrwset::{KvrwSet, Version};
use gridledger_proto::prost::Message;
use gridledger_proto::protos::Response;

const NS: &str = "certs";
const ENERGY_NS: &str = "energy";
/// A delivery period: 2026-11-26 13:00 UTC.
const PERIOD: i64 = 1_795_698_000;
/// The next one.
const NEXT: i64 = PERIOD + 900;
/// When the period's certificates expire: a year after its end.
const EXPIRY: i64 = PERIOD + 900 + 365 * 86_400;
const C001: &str = "CommunityMSP:POD-C001";
const C002: &str = "CommunityMSP:POD-C002";

/// The market channel's world state, by (namespace, key).
#[derive(Default)]
struct MemState(support::Entries);

impl MemState {
    fn apply(&mut self, result: &SimulationResult) {
        for ns in &result.rwset.ns_rwset {
            let kv = KvrwSet::decode(ns.rwset.as_slice()).expect("KVRWSet");
            for w in kv.writes {
                let key = (ns.namespace.clone(), w.key);
                if w.is_delete {
                    self.0.remove(&key);
                } else {
                    self.0.insert(key, (w.value, Version::default()));
                }
            }
        }
    }

    /// Writes `energy`'s attestation of `account` for `period`, as `Attest` would have.
    fn attest(&mut self, period: i64, account: &str, export_wh: u64) {
        let attestation = Attestation {
            account: account.to_owned(),
            period,
            export_wh,
            import_wh: 0,
            burned_wh: 0,
            commitment: "00".repeat(32),
        };
        self.0.insert(
            (
                ENERGY_NS.to_owned(),
                format!("attestation/{period:012}/{account}"),
            ),
            (
                serde_json::to_vec(&attestation).expect("json"),
                Version::default(),
            ),
        );
    }
}

impl StateReader for MemState {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<(Vec<u8>, Version)>, String> {
        Ok(support::get(&self.0, namespace, key))
    }

    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, Version)>, String> {
        Ok(support::range(&self.0, namespace, start, end, limit))
    }
}

/// Runs `energy` for the same-channel calls, as the peer does on `market`.
struct EnergyHost;

impl ChaincodeHost for EnergyHost {
    fn run(&self, name: &str, stub: &mut ChaincodeStub<'_>) -> Result<Response, String> {
        if name != ENERGY_NS {
            return Err(format!("chaincode {name} is not defined"));
        }
        Ok(EnergyMarket {
            dso_msp_id: "DSOMSP".to_owned(),
        }
        .invoke(stub))
    }

    fn channel_state(&self, channel_id: &str) -> Result<Box<dyn StateReader + '_>, String> {
        Err(format!("channel {channel_id} is not joined"))
    }
}

use support::{People, Who};

/// The identities of the test consortium.
fn people(test: &str) -> People {
    support::People::new(
        &format!("certs-{test}"),
        serde_json::json!([
            {"msp_id": "DSOMSP", "users": [
                {"name": "Operator"},
                {"name": "Meter-C001", "attributes": {"meter": "MTR-C001", "pod": "POD-C001"}}
            ]},
            {"msp_id": "RetailerMSP", "users": [
                {"name": "Clerk"},
                {"name": "Prosumer-R002", "attributes": {"pod": "POD-R002"}}
            ]},
            {"msp_id": "CommunityMSP", "users": [
                {"name": "Prosumer-C001", "attributes": {"pod": "POD-C001"}},
                {"name": "Prosumer-C002", "attributes": {"pod": "POD-C002"}}
            ]}
        ]),
    )
}

/// The roles the tests use most.
trait Roles {
    fn dso(&self) -> Who;
    fn c001(&self) -> Who;
}

impl Roles for People {
    fn dso(&self) -> Who {
        self.user("DSOMSP", "Operator")
    }

    fn c001(&self) -> Who {
        self.user("CommunityMSP", "Prosumer-C001")
    }
}

fn certs() -> GuaranteesOfOrigin {
    GuaranteesOfOrigin {
        dso_msp_id: "DSOMSP".to_owned(),
    }
}

/// Runs `args` as `who` at time `at` on `market`, applying the writes of a success.
fn run(state: &mut MemState, who: &Who, at: i64, args: &[&str]) -> SimulationResult {
    let invocation = support::invocation("market", NS, who, at, args);
    let result = simulate_with_host(&certs(), NS, &invocation, state, &EnergyHost);
    if result.response.status == 200 {
        state.apply(&result);
    }
    result
}

/// `IssueCertificates` by `who` just after `period`.
fn issue(
    state: &mut MemState,
    who: &Who,
    period: i64,
    account: &str,
    device: &str,
    technology: &str,
) -> SimulationResult {
    let p = period.to_string();
    run(
        state,
        who,
        period + 900,
        &["IssueCertificates", &p, account, device, technology],
    )
}

fn issuance(result: &SimulationResult) -> Issuance {
    serde_json::from_slice(&ok(result)).expect("issuance")
}

fn certificate(result: &SimulationResult) -> Certificate {
    serde_json::from_slice(&ok(result)).expect("certificate")
}

fn get(state: &mut MemState, who: &Who, id: &str) -> Certificate {
    certificate(&run(state, who, NEXT, &["GetCertificate", id]))
}

/// The ids of a query's certificates, in the order answered.
fn ids(state: &mut MemState, who: &Who, args: &[&str]) -> Vec<String> {
    let certificates: Vec<Certificate> =
        serde_json::from_slice(&ok(&run(state, who, NEXT, args))).expect("certificates");
    certificates.into_iter().map(|c| c.id).collect()
}

fn id(period: i64, account: &str, n: u32) -> String {
    format!("GO-{period:012}-{account}-{n:05}")
}

#[test]
fn only_the_dsos_operators_issue() {
    let people = people("issuer");
    let mut state = MemState::default();
    state.attest(PERIOD, C001, 3000);
    assert!(Registry::with_builtins().contains("certs"));
    // Not the producer itself, not its organization's admin, not the DSO's own meters.
    fails(
        &issue(
            &mut state,
            &people.c001(),
            PERIOD,
            C001,
            "PV-C001",
            "solar-pv",
        ),
        "only the DSO (DSOMSP) may issue certificates, not CommunityMSP",
    );
    fails(
        &issue(
            &mut state,
            &people.user("CommunityMSP", "Admin"),
            PERIOD,
            C001,
            "PV-C001",
            "solar-pv",
        ),
        "only the DSO",
    );
    fails(
        &issue(
            &mut state,
            &people.user("DSOMSP", "Meter-C001"),
            PERIOD,
            C001,
            "PV-C001",
            "solar-pv",
        ),
        "meter MTR-C001 may not issue certificates",
    );
    let issued = issuance(&issue(
        &mut state,
        &people.dso(),
        PERIOD,
        C001,
        "PV-C001",
        "solar-pv",
    ));
    assert_eq!(issued.issued.len(), 3);
}

#[test]
fn certificates_are_issued_only_against_an_attestation() {
    let people = people("attested");
    let dso = people.dso();
    let mut state = MemState::default();
    fails(
        &issue(&mut state, &dso, PERIOD, C001, "PV-C001", "solar-pv"),
        "CommunityMSP:POD-C001 is not attested for period 1795698000",
    );
    // Another period's or another account's attestation does not count.
    state.attest(NEXT, C001, 5000);
    state.attest(PERIOD, C002, 5000);
    fails(
        &issue(&mut state, &dso, PERIOD, C001, "PV-C001", "solar-pv"),
        "only against attested export",
    );
    state.attest(PERIOD, C001, 1000);
    let result = issue(&mut state, &dso, PERIOD, C001, "PV-C001", "solar-pv");
    assert_eq!(issuance(&result).issued, [id(PERIOD, C001, 1)]);
    // The attestation was read through `energy`, so it is in the transaction's read set.
    let energy = result
        .rwset
        .ns_rwset
        .iter()
        .find(|ns| ns.namespace == ENERGY_NS)
        .expect("energy's reads are recorded");
    let kv = KvrwSet::decode(energy.rwset.as_slice()).expect("KVRWSet");
    assert_eq!(
        kv.reads.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        [format!("attestation/{PERIOD:012}/{C001}")]
    );
    assert!(kv.writes.is_empty());
}

#[test]
fn issue_floors_to_whole_kwh_and_keeps_the_remainder() {
    let people = people("floor");
    let dso = people.dso();
    let mut state = MemState::default();
    state.attest(PERIOD, C001, 2750);
    let issued = issuance(&issue(
        &mut state, &dso, PERIOD, C001, "PV-C001", "solar-pv",
    ));
    assert_eq!(issued.issued, [id(PERIOD, C001, 1), id(PERIOD, C001, 2)]);
    assert_eq!(
        issued.certified,
        Certified {
            account: C001.to_owned(),
            period: PERIOD,
            export_wh: 2750,
            certified_wh: 2000,
            uncertified_wh: 750,
            certificates: 2,
        }
    );
    let first = get(&mut state, &dso, &id(PERIOD, C001, 1));
    assert_eq!(
        first,
        Certificate {
            id: "GO-001795698000-CommunityMSP:POD-C001-00001".to_owned(),
            energy_wh: 1000,
            device: "PV-C001".to_owned(),
            pod: "POD-C001".to_owned(),
            account: C001.to_owned(),
            period_start: PERIOD,
            period_end: PERIOD + 900,
            technology: "solar-pv".to_owned(),
            issuer: "DSOMSP".to_owned(),
            issued_at: PERIOD + 900,
            issue_tx_id: format!(
                "tx-{}-IssueCertificates-{PERIOD}-{C001}-PV-C001-solar-pv",
                PERIOD + 900
            ),
            expires_at: EXPIRY,
            owner: C001.to_owned(),
            status: "active".to_owned(),
            cancellation: None,
        }
    );
    // The 750 Wh below a certificate stay uncertified, recorded.
    fails(
        &issue(&mut state, &dso, PERIOD, C001, "PV-C001", "solar-pv"),
        "nothing left to certify for CommunityMSP:POD-C001 in period 1795698000: 2750 Wh attested, 2000 Wh certified, 750 Wh left",
    );
    let record: Certified = serde_json::from_slice(&ok(&run(
        &mut state,
        &dso,
        NEXT,
        &["GetCertified", &PERIOD.to_string(), C001],
    )))
    .expect("record");
    assert_eq!(record, issued.certified);
    // Less than a kWh attested: nothing at all.
    state.attest(PERIOD, C002, 999);
    fails(
        &issue(&mut state, &dso, PERIOD, C002, "PV-C002", "solar-pv"),
        "nothing left to certify",
    );
}

#[test]
fn nothing_is_issued_twice_for_the_same_metered_energy() {
    let people = people("twice");
    let dso = people.dso();
    let mut state = MemState::default();
    // 1002.3 kWh: more than one issue writes, so a second issue has something left.
    state.attest(PERIOD, C001, 1_002_300);
    let first = issuance(&issue(
        &mut state, &dso, PERIOD, C001, "PV-C001", "solar-pv",
    ));
    assert_eq!(first.issued.len(), 1000);
    assert_eq!(
        (first.certified.certified_wh, first.certified.uncertified_wh),
        (1_000_000, 2_300)
    );
    // The second issues only what is left, numbered on. It reads and writes the account's
    // record, so of two issues endorsed concurrently MVCC commits only the first.
    let result = issue(&mut state, &dso, PERIOD, C001, "PV-C001", "solar-pv");
    let record_key = format!("certified/{PERIOD:012}/{C001}");
    let ns = result
        .rwset
        .ns_rwset
        .iter()
        .find(|ns| ns.namespace == NS)
        .expect("certs' reads and writes");
    let kv = KvrwSet::decode(ns.rwset.as_slice()).expect("KVRWSet");
    assert!(kv.reads.iter().any(|r| r.key == record_key));
    assert!(kv.writes.iter().any(|w| w.key == record_key));
    let second = issuance(&result);
    assert_eq!(
        second.issued,
        [id(PERIOD, C001, 1001), id(PERIOD, C001, 1002)]
    );
    assert_eq!(
        (
            second.certified.certified_wh,
            second.certified.uncertified_wh,
            second.certified.certificates
        ),
        (1_002_000, 300, 1002)
    );
    // Then nothing.
    fails(
        &issue(&mut state, &dso, PERIOD, C001, "PV-C001", "solar-pv"),
        "nothing left to certify",
    );
    let p = PERIOD.to_string();
    let n = NEXT.to_string();
    let all = ids(&mut state, &dso, &["ByPeriod", &p, &n]);
    assert_eq!(all.len(), 1002);
    assert_eq!(
        all.iter().collect::<std::collections::BTreeSet<_>>().len(),
        1002
    );
}

#[test]
fn only_the_owner_transfers() {
    let people = people("transfer");
    let dso = people.dso();
    let c001 = people.c001();
    let mut state = MemState::default();
    state.attest(PERIOD, C001, 2000);
    ok(&issue(
        &mut state, &dso, PERIOD, C001, "PV-C001", "solar-pv",
    ));
    let go = id(PERIOD, C001, 1);
    for (who, needle) in [
        (
            people.user("CommunityMSP", "Prosumer-C002"),
            "only the owner CommunityMSP:POD-C001 may transfer",
        ),
        // An organization's admin holds the organization's account, not its customers'.
        (
            people.user("CommunityMSP", "Admin"),
            "the creator holds CommunityMSP",
        ),
        (
            people.user("DSOMSP", "Meter-C001"),
            "meter MTR-C001 holds no certificates",
        ),
        (dso.clone(), "the creator holds no account"),
    ] {
        fails(
            &run(&mut state, &who, NEXT, &["Transfer", &go, "RetailerMSP"]),
            needle,
        );
    }
    fails(
        &run(&mut state, &c001, NEXT, &["Transfer", &go, C001]),
        "already held by",
    );
    // The producer sells it to a retailer's portfolio…
    let moved = certificate(&run(
        &mut state,
        &c001,
        NEXT,
        &["Transfer", &go, "RetailerMSP"],
    ));
    assert_eq!(moved.owner, "RetailerMSP");
    fails(
        &run(&mut state, &c001, NEXT, &["Transfer", &go, C002]),
        "only the owner RetailerMSP may transfer",
    );
    // …where only the retailer's admin moves it, here to one of its customers.
    fails(
        &run(
            &mut state,
            &people.user("RetailerMSP", "Clerk"),
            NEXT,
            &["Transfer", &go, "RetailerMSP:POD-R002"],
        ),
        "the creator holds no account",
    );
    ok(&run(
        &mut state,
        &people.user("RetailerMSP", "Admin"),
        NEXT,
        &["Transfer", &go, "RetailerMSP:POD-R002"],
    ));
    assert_eq!(get(&mut state, &dso, &go).owner, "RetailerMSP:POD-R002");
    // The other certificate never moved.
    assert_eq!(get(&mut state, &dso, &id(PERIOD, C001, 2)).owner, C001);
}

#[test]
fn a_certificate_is_cancelled_exactly_once_and_never_transferred_after() {
    let people = people("cancel");
    let dso = people.dso();
    let c001 = people.c001();
    let mut state = MemState::default();
    state.attest(PERIOD, C001, 2000);
    ok(&issue(
        &mut state, &dso, PERIOD, C001, "PV-C001", "solar-pv",
    ));
    let go = id(PERIOD, C001, 1);
    let cancel = [
        "Cancel",
        go.as_str(),
        "Bakery Meyer",
        "2026 supply contract",
    ];
    fails(
        &run(
            &mut state,
            &people.user("CommunityMSP", "Prosumer-C002"),
            NEXT,
            &cancel,
        ),
        "only the owner CommunityMSP:POD-C001 may cancel",
    );
    let at = NEXT + 60;
    let cancelled = certificate(&run(&mut state, &c001, at, &cancel));
    assert_eq!(cancelled.status, "cancelled");
    let cancellation = cancelled.cancellation.expect("cancellation recorded");
    assert_eq!(
        (
            cancellation.beneficiary.as_str(),
            cancellation.purpose.as_str(),
            cancellation.cancelled_at
        ),
        ("Bakery Meyer", "2026 supply contract", at)
    );
    assert_eq!(cancellation.tx_id, format!("tx-{at}-{}", cancel.join("-")));
    // Exactly once, even for another beneficiary.
    fails(
        &run(
            &mut state,
            &c001,
            at,
            &["Cancel", &go, "Someone else", "again"],
        ),
        "was cancelled at",
    );
    // Never transferred after.
    fails(
        &run(&mut state, &c001, at, &["Transfer", &go, "RetailerMSP"]),
        "cannot be transferred",
    );
    assert_eq!(get(&mut state, &dso, &go).owner, C001);
    // The other certificate is untouched and still moves.
    ok(&run(
        &mut state,
        &c001,
        at,
        &["Transfer", &id(PERIOD, C001, 2), "RetailerMSP"],
    ));
}

#[test]
fn expired_certificates_are_neither_transferred_nor_cancelled_nor_issued() {
    let people = people("expiry");
    let dso = people.dso();
    let c001 = people.c001();
    let mut state = MemState::default();
    state.attest(PERIOD, C001, 3000);
    ok(&issue(
        &mut state, &dso, PERIOD, C001, "PV-C001", "solar-pv",
    ));
    let (a, b, c) = (
        id(PERIOD, C001, 1),
        id(PERIOD, C001, 2),
        id(PERIOD, C001, 3),
    );
    // Up to the last second of its life a certificate moves and cancels…
    ok(&run(
        &mut state,
        &c001,
        EXPIRY - 1,
        &["Transfer", &a, "RetailerMSP"],
    ));
    ok(&run(
        &mut state,
        &c001,
        EXPIRY - 1,
        &["Cancel", &b, "Bakery Meyer", "2026"],
    ));
    // …and from its expiry it does neither.
    fails(
        &run(&mut state, &c001, EXPIRY, &["Transfer", &c, "RetailerMSP"]),
        "expired at",
    );
    fails(
        &run(
            &mut state,
            &c001,
            EXPIRY,
            &["Cancel", &c, "Bakery Meyer", "2026"],
        ),
        "too late to be cancelled",
    );
    fails(
        &run(
            &mut state,
            &people.user("RetailerMSP", "Admin"),
            EXPIRY + 86_400,
            &["Cancel", &a, "Bakery Meyer", "2026"],
        ),
        "expired at",
    );
    // A period so old its certificates would already be expired is not certified.
    let old = PERIOD - 366 * 86_400;
    state.attest(old, C001, 3000);
    let p = old.to_string();
    fails(
        &run(
            &mut state,
            &dso,
            NEXT,
            &["IssueCertificates", &p, C001, "PV-C001", "solar-pv"],
        ),
        "would have expired",
    );
}

#[test]
fn queries_by_owner_device_and_period_follow_transfers() {
    let people = people("queries");
    let dso = people.dso();
    let c001 = people.c001();
    let c002 = people.user("CommunityMSP", "Prosumer-C002");
    let mut state = MemState::default();
    state.attest(PERIOD, C001, 3000);
    state.attest(NEXT, C001, 2400);
    state.attest(PERIOD, C002, 1200);
    ok(&issue(
        &mut state, &dso, PERIOD, C001, "PV-C001", "solar-pv",
    ));
    ok(&issue(&mut state, &dso, NEXT, C001, "PV-C001", "solar-pv"));
    ok(&issue(&mut state, &dso, PERIOD, C002, "WT-C002", "wind"));
    ok(&run(
        &mut state,
        &c001,
        NEXT,
        &["Transfer", &id(PERIOD, C001, 1), "RetailerMSP"],
    ));
    ok(&run(
        &mut state,
        &c002,
        NEXT,
        &["Transfer", &id(PERIOD, C002, 1), "RetailerMSP:POD-R002"],
    ));
    ok(&run(
        &mut state,
        &people.user("RetailerMSP", "Admin"),
        NEXT,
        &["Transfer", &id(PERIOD, C001, 1), "RetailerMSP:POD-R002"],
    ));
    let by_owner = |state: &mut MemState, account: &str| ids(state, &dso, &["ByOwner", account]);
    assert_eq!(
        by_owner(&mut state, C001),
        [
            id(PERIOD, C001, 2),
            id(PERIOD, C001, 3),
            id(NEXT, C001, 1),
            id(NEXT, C001, 2)
        ]
    );
    assert_eq!(
        by_owner(&mut state, "RetailerMSP:POD-R002"),
        [id(PERIOD, C001, 1), id(PERIOD, C002, 1)]
    );
    assert!(by_owner(&mut state, "RetailerMSP").is_empty());
    assert!(by_owner(&mut state, C002).is_empty());
    // The owner query answers whole certificates, with their current owner.
    let held: Vec<Certificate> = serde_json::from_slice(&ok(&run(
        &mut state,
        &dso,
        NEXT,
        &["ByOwner", "RetailerMSP:POD-R002"],
    )))
    .expect("certificates");
    assert!(held.iter().all(|c| c.owner == "RetailerMSP:POD-R002"));

    assert_eq!(
        ids(&mut state, &dso, &["ByDevice", "PV-C001"]),
        [
            id(PERIOD, C001, 1),
            id(PERIOD, C001, 2),
            id(PERIOD, C001, 3),
            id(NEXT, C001, 1),
            id(NEXT, C001, 2)
        ]
    );
    assert_eq!(
        ids(&mut state, &dso, &["ByDevice", "WT-C002"]),
        [id(PERIOD, C002, 1)]
    );
    assert!(ids(&mut state, &dso, &["ByDevice", "PV-C00"]).is_empty());

    let period = |state: &mut MemState, from: i64, to: i64| {
        ids(
            state,
            &dso,
            &["ByPeriod", &from.to_string(), &to.to_string()],
        )
    };
    assert_eq!(
        period(&mut state, PERIOD, NEXT),
        [
            id(PERIOD, C001, 1),
            id(PERIOD, C001, 2),
            id(PERIOD, C001, 3),
            id(PERIOD, C002, 1)
        ]
    );
    assert_eq!(
        period(&mut state, NEXT, NEXT + 900),
        [id(NEXT, C001, 1), id(NEXT, C001, 2)]
    );
    assert_eq!(period(&mut state, PERIOD - 900, NEXT + 900).len(), 6);
    assert!(period(&mut state, PERIOD, PERIOD).is_empty());
    assert!(period(&mut state, 0, PERIOD).is_empty());
}

#[test]
fn a_device_stays_with_its_producer_and_technology() {
    let people = people("device");
    let dso = people.dso();
    let mut state = MemState::default();
    state.attest(PERIOD, C001, 1000);
    state.attest(NEXT, C001, 1000);
    state.attest(PERIOD, C002, 1000);
    ok(&issue(
        &mut state, &dso, PERIOD, C001, "PV-C001", "solar-pv",
    ));
    fails(
        &issue(&mut state, &dso, PERIOD, C002, "PV-C001", "solar-pv"),
        "device PV-C001 produces for CommunityMSP:POD-C001, not CommunityMSP:POD-C002",
    );
    fails(
        &issue(&mut state, &dso, NEXT, C001, "PV-C001", "wind"),
        "device PV-C001 is solar-pv, not wind",
    );
    ok(&issue(&mut state, &dso, NEXT, C001, "PV-C001", "solar-pv"));
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    let people = people("bad-args");
    let dso = people.dso();
    let c001 = people.c001();
    let mut state = MemState::default();
    state.attest(PERIOD, C001, 1000);
    ok(&issue(
        &mut state, &dso, PERIOD, C001, "PV-C001", "solar-pv",
    ));
    let go = id(PERIOD, C001, 1);
    let p = PERIOD.to_string();
    let long = "x".repeat(513);
    let issue_args = |period: &'static str, account: &'static str, device, technology| {
        vec!["IssueCertificates", period, account, device, technology]
    };
    let cases: Vec<(&Who, Vec<&str>, &str)> = vec![
        (
            &dso,
            vec!["IssueCertificates", &p, C001, "PV-C001"],
            "takes 4 arguments",
        ),
        (
            &dso,
            issue_args("1795698001", C001, "PV-C001", "solar-pv"),
            "boundary",
        ),
        (
            &dso,
            issue_args("-900", C001, "PV-C001", "solar-pv"),
            "boundary",
        ),
        (
            &dso,
            issue_args("soon", C001, "PV-C001", "solar-pv"),
            "not a Unix time",
        ),
        (
            &dso,
            issue_args("900000000000000", C001, "PV-C001", "solar-pv"),
            "beyond the last period",
        ),
        (
            &dso,
            vec![
                "IssueCertificates",
                &p,
                "CommunityMSP",
                "PV-C001",
                "solar-pv",
            ],
            "a producer's account <MSP>:<POD>",
        ),
        (
            &dso,
            vec![
                "IssueCertificates",
                &p,
                "Comm unity:POD-C001",
                "PV-C001",
                "solar-pv",
            ],
            "MSP id",
        ),
        (
            &dso,
            vec![
                "IssueCertificates",
                &p,
                "CommunityMSP:POD/C001",
                "PV-C001",
                "solar-pv",
            ],
            "POD",
        ),
        (
            &dso,
            vec!["IssueCertificates", &p, "a:b:c", "PV-C001", "solar-pv"],
            "POD",
        ),
        (
            &dso,
            vec!["IssueCertificates", &p, C001, "PV C001", "solar-pv"],
            "device",
        ),
        (
            &dso,
            vec!["IssueCertificates", &p, C001, "PV-C001", "Solar"],
            "technology \"Solar\"",
        ),
        (
            &dso,
            vec!["IssueCertificates", &p, C001, "PV-C001", "solar_pv"],
            "technology",
        ),
        (
            &dso,
            vec!["IssueCertificates", &p, C001, "PV-C001", ""],
            "technology",
        ),
        (&c001, vec!["Transfer", &go], "takes 2 arguments"),
        (
            &c001,
            vec!["Transfer", "GO-nope", "RetailerMSP"],
            "no certificate GO-nope",
        ),
        (
            &c001,
            vec!["Transfer", "a/b", "RetailerMSP"],
            "certificate id",
        ),
        (&c001, vec!["Transfer", &go, "Retailer/MSP"], "MSP id"),
        (&c001, vec!["Transfer", &go, "RetailerMSP:"], "POD"),
        (
            &c001,
            vec!["Cancel", &go, " ", "2026"],
            "needs a beneficiary",
        ),
        (&c001, vec!["Cancel", &go, "Bakery", ""], "needs a purpose"),
        (
            &c001,
            vec!["Cancel", &go, "Bakery", &long],
            "more than the 512",
        ),
        (
            &c001,
            vec!["Cancel", &go, "Bak\u{7}ery", "2026"],
            "control characters",
        ),
        (&c001, vec!["Cancel", &go, "Bakery"], "takes 3 arguments"),
        (&c001, vec!["GetCertificate", "GO-nope"], "no certificate"),
        (&c001, vec!["ByOwner", "bad account!"], "MSP id"),
        (&c001, vec!["ByDevice", ""], "device"),
        (
            &c001,
            vec!["ByPeriod", "1795698900", &p],
            "ends before it starts",
        ),
        (&c001, vec!["ByPeriod", "0", "7"], "boundary"),
        (
            &c001,
            vec!["GetCertified", &p, "CommunityMSP:POD-C009"],
            "nothing is certified",
        ),
        (&c001, vec!["Nope"], "does not exist in certs"),
        (&c001, vec![], "does not exist in certs"),
    ];
    for (who, args, needle) in cases {
        fails(&run(&mut state, who, NEXT, &args), needle);
    }
    // None of it changed the certificate.
    let stored = get(&mut state, &dso, &go);
    assert_eq!(
        (stored.owner.as_str(), stored.status.as_str()),
        (C001, "active")
    );
}
