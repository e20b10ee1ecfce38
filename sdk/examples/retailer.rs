//! A retailer's application on the `energy` market of a network started with `gridledger up`:
//! it funds a customer, has one customer offer energy for a delivery period and another buy
//! part of it, and watches the market's trade events — each trade escrows the buyer's payment
//! until the DSO settles it after the period — keeping its place in a checkpoint file, so a
//! second run resumes after the last event the first one processed.
//!
//! ```text
//! cargo run -p gridledger-sdk --example retailer -- NETWORK_JSON [CHECKPOINT_FILE]
//! ```
//!
//! NETWORK_JSON is the `network.json` that `gridledger up --dir DIR` writes (default: the
//! `GRIDLEDGER_NETWORK` environment variable); CHECKPOINT_FILE defaults to
//! `GRIDLEDGER_CHECKPOINT`, else `retailer-trades.checkpoint` beside network.json. It exits 0
//! once it has seen the event of its own trade, and 1 with the reason otherwise.

use gridledger_identity::SigningIdentity;
use gridledger_sdk::{EventsOptions, FileCheckpointer, Gateway, RetryPolicy};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The market channel and its chaincode.
const CHANNEL: &str = "market";
const CHAINCODE: &str = "energy";
/// The retailer's organization and the identities `up` issued to it.
const RETAILER: &str = "RetailerMSP";
const ADMIN: &str = "Admin";
const SELLER: &str = "Prosumer-R001";
const BUYER: &str = "Prosumer-R002";
/// The buyer's account: its organization and point of delivery (its certificate's `pod`).
const BUYER_ACCOUNT: &str = "RetailerMSP:POD-R002";
/// What the customers trade: 2 kWh in the period (8 kW for the quarter hour) at 20 c/kWh.
const ENERGY_WH: &str = "2000";
const PRICE_CENTS_PER_KWH: &str = "20";
/// Payment issued to the buyer, cents.
const PAYMENT_CENTS: &str = "10000";
/// How long to wait for the trade's event.
const WATCH_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("retailer: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let network_path = args
        .next()
        .or_else(|| std::env::var_os("GRIDLEDGER_NETWORK").map(PathBuf::from))
        .ok_or("usage: retailer NETWORK_JSON [CHECKPOINT_FILE] (or set GRIDLEDGER_NETWORK)")?;
    let network = NetworkFile::read(&network_path)?;
    let checkpoint_path = args
        .next()
        .or_else(|| std::env::var_os("GRIDLEDGER_CHECKPOINT").map(PathBuf::from))
        .unwrap_or_else(|| network.dir.join("retailer-trades.checkpoint"));

    let admin = network.gateway(RETAILER, ADMIN).await?;
    let seller = network.gateway(RETAILER, SELLER).await?;
    let buyer = network.gateway(RETAILER, BUYER).await?;

    // Listen first, from the checkpoint (or from the next block on a first run), so the
    // trade made below cannot be missed.
    let mut checkpointer = FileCheckpointer::open(&checkpoint_path).map_err(|e| e.to_string())?;
    match checkpointer.checkpoint() {
        Some(c) => println!(
            "resuming trade events in block {} after transaction {}",
            c.block_number,
            c.transaction_id.as_deref().unwrap_or("(none)")
        ),
        None => println!("no checkpoint yet: watching trade events from the next block"),
    }
    let mut events = buyer
        .network(CHANNEL)
        .chaincode_events(
            CHAINCODE,
            EventsOptions::new().checkpoint(checkpointer.checkpoint()),
        )
        .await
        .map_err(|e| format!("listening to {CHAINCODE} events: {e}"))?;

    // Every transaction here is safe to endorse again after an MVCC conflict: an invalid
    // transaction changed nothing, and the retry re-reads the balances.
    let energy = |gateway: &Gateway| {
        gateway
            .network(CHANNEL)
            .contract(CHAINCODE)
            .with_retry(RetryPolicy::idempotent(10))
    };
    let period = next_quiet_period()?.to_string();
    let run_id = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| format!("the clock is before 1970: {e}"))?
            .as_nanos()
    );
    let offer_id = format!("offer-{run_id}");
    let trade_id = format!("trade-{run_id}");

    let (_, block) = energy(&admin)
        .submit("IssuePayment", &[BUYER_ACCOUNT, PAYMENT_CENTS])
        .await
        .map_err(|e| format!("issuing payment to {BUYER_ACCOUNT}: {e}"))?;
    println!("issued {PAYMENT_CENTS} cents to {BUYER_ACCOUNT} (block {block})");
    let (_, block) = energy(&seller)
        .submit(
            "PostOffer",
            &[&offer_id, &period, ENERGY_WH, PRICE_CENTS_PER_KWH],
        )
        .await
        .map_err(|e| format!("posting offer {offer_id}: {e}"))?;
    println!(
        "{SELLER} offers {ENERGY_WH} Wh at {PRICE_CENTS_PER_KWH} c/kWh for period {period} as {offer_id} (block {block})"
    );
    let (_, block) = energy(&buyer)
        .submit("AcceptOffer", &[&trade_id, &offer_id, &period, ENERGY_WH])
        .await
        .map_err(|e| format!("accepting offer {offer_id}: {e}"))?;
    println!("{BUYER} accepted it as {trade_id} (block {block})");

    // Watch trade events until our own arrives; each event is checkpointed once handled.
    let deadline = tokio::time::Instant::now() + WATCH_TIMEOUT;
    loop {
        let event = match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) => {
                return Err(format!(
                    "did not see the event of trade {trade_id} within {} s",
                    WATCH_TIMEOUT.as_secs()
                ));
            }
            Ok(Err(e)) => return Err(format!("reading {CHAINCODE} events: {e}")),
            Ok(Ok(None)) => {
                return Err(format!(
                    "the peer ended the event stream before trade {trade_id}'s event"
                ));
            }
            Ok(Ok(Some(event))) => event,
        };
        let ours = if event.event_name == "Trade" {
            let trade: serde_json::Value = serde_json::from_slice(&event.payload)
                .map_err(|e| format!("trade event in tx {}: not JSON: {e}", event.tx_id))?;
            println!(
                "[block {}] trade {}: {} Wh from {} to {} for period {}, {} cents in escrow ({}) until the DSO settles it",
                event.block_number,
                trade["id"].as_str().unwrap_or("?"),
                trade["energy_wh"],
                trade["seller"].as_str().unwrap_or("?"),
                trade["buyer"].as_str().unwrap_or("?"),
                trade["period"],
                trade["escrow_cents"],
                trade["status"].as_str().unwrap_or("?"),
            );
            trade["id"] == trade_id.as_str()
        } else {
            println!(
                "[block {}] {} event in tx {}",
                event.block_number, event.event_name, event.tx_id
            );
            false
        };
        checkpointer
            .checkpoint_chaincode_event(&event)
            .map_err(|e| e.to_string())?;
        if ours {
            break;
        }
    }

    let balance = energy(&buyer)
        .evaluate("Balance", &[BUYER_ACCOUNT])
        .await
        .map_err(|e| format!("reading {BUYER_ACCOUNT}'s balance: {e}"))?;
    println!(
        "saw trade {trade_id}; {BUYER_ACCOUNT}: {}; checkpoint saved in {}",
        String::from_utf8_lossy(&balance),
        checkpointer.path().display()
    );
    Ok(())
}

/// The start of the next delivery period at 02:00 UTC at least an hour away: a multiple of
/// the 900 s period length, long before its gate closure, in a quiet hour on the feeder.
fn next_quiet_period() -> Result<u64, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("the clock is before 1970: {e}"))?
        .as_secs();
    let mut period = now / 86_400 * 86_400 + 7_200;
    if period < now + 3_600 {
        period += 86_400;
    }
    Ok(period)
}

/// A network.json and the folder its paths are relative to.
struct NetworkFile {
    dir: PathBuf,
    json: serde_json::Value,
}

impl NetworkFile {
    fn read(path: &Path) -> Result<NetworkFile, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let json = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a network.json: {e}", path.display()))?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(NetworkFile { dir, json })
    }

    /// A gateway to `msp_id`'s peer signing as `name`, one of the users or admins network.json
    /// lists for it (certificate and key paths).
    async fn gateway(&self, msp_id: &str, name: &str) -> Result<Gateway, String> {
        let org = self.json["organizations"]
            .as_array()
            .and_then(|orgs| orgs.iter().find(|o| o["mspId"] == msp_id))
            .ok_or_else(|| format!("network.json has no organization {msp_id}"))?;
        let identity = ["users", "admins"]
            .iter()
            .filter_map(|list| org[*list].as_array())
            .flatten()
            .find(|u| u["name"] == name)
            .ok_or_else(|| format!("network.json lists no identity {name} of {msp_id}"))?;
        let text = |value: &serde_json::Value, what: &str| {
            value
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("network.json: {msp_id} has no {what}"))
        };
        let signer = SigningIdentity::load(
            msp_id,
            &self.dir.join(text(&identity["cert"], "certificate path")?),
            &self.dir.join(text(&identity["key"], "key path")?),
        )
        .map_err(|e| format!("loading {name} of {msp_id}: {e}"))?;
        let peer = &org["peers"][0];
        let tls_ca_path = self.dir.join(text(&peer["tlsCaCert"], "peer TLS CA")?);
        let tls_ca = std::fs::read(&tls_ca_path)
            .map_err(|e| format!("reading {}: {e}", tls_ca_path.display()))?;
        let endpoint = text(&peer["endpoint"], "peer endpoint")?;
        Gateway::connect(
            &endpoint,
            &tls_ca,
            &text(&peer["serverName"], "peer server name")?,
            signer,
        )
        .await
        .map(|g| g.with_timeout(Duration::from_secs(60)))
        .map_err(|e| format!("connecting {name} of {msp_id} to {endpoint}: {e}"))
    }
}
