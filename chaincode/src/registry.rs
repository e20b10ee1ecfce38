//! `Registry`: the chaincodes a peer can run, by name.
//!
//! Chaincode here is compiled into the binary, so "installing" a chaincode is registering its
//! implementation under a name; which channels use it (and with which endorsement policy) is
//! decided by the chaincode definitions, not here.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::Chaincode;
use crate::basic::AssetTransferBasic;
use crate::certs::GuaranteesOfOrigin;
use crate::energy::EnergyMarket;
use crate::flex::DemandResponse;
use crate::meter::MeterReadings;
use crate::privatedata::PrivateData;

/// The name of the built-in asset-transfer-basic chaincode.
pub const BASIC: &str = "basic";
/// The name of the built-in guarantees-of-origin chaincode.
pub const CERTS: &str = "certs";
/// The name of the built-in energy-market chaincode.
pub const ENERGY: &str = "energy";
/// The name of the built-in demand-response chaincode.
pub const FLEX: &str = "flex";
/// The name of the built-in meter-readings chaincode.
pub const METER: &str = "meter";
/// The name of the built-in private data chaincode.
pub const PRIVATE_DATA: &str = "privatedata";
/// The DSO's MSP id the built-in `meter` chaincode lets amend readings (the local
/// consortium's naming; a deployment with another id registers its own instance).
pub const DSO_MSP_ID: &str = "DSOMSP";

/// Chaincode name → implementation. Cheap to clone (the implementations are shared).
#[derive(Clone, Default)]
pub struct Registry {
    chaincodes: BTreeMap<String, Arc<dyn Chaincode>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// A registry with every built-in chaincode: `"basic"` ([`AssetTransferBasic`]),
    /// `"energy"` ([`EnergyMarket`]), `"flex"` ([`DemandResponse`]), `"meter"`
    /// ([`MeterReadings`]) — the three with [`DSO_MSP_ID`] as the DSO — `"certs"`
    /// ([`GuaranteesOfOrigin`], with [`DSO_MSP_ID`] as the issuing body) and `"privatedata"`
    /// ([`PrivateData`]).
    pub fn with_builtins() -> Registry {
        let mut registry = Registry::new();
        registry.register(BASIC, Arc::new(AssetTransferBasic));
        registry.register(
            CERTS,
            Arc::new(GuaranteesOfOrigin {
                dso_msp_id: DSO_MSP_ID.to_owned(),
            }),
        );
        registry.register(
            ENERGY,
            Arc::new(EnergyMarket {
                dso_msp_id: DSO_MSP_ID.to_owned(),
            }),
        );
        registry.register(
            FLEX,
            Arc::new(DemandResponse {
                dso_msp_id: DSO_MSP_ID.to_owned(),
            }),
        );
        registry.register(
            METER,
            Arc::new(MeterReadings {
                dso_msp_id: DSO_MSP_ID.to_owned(),
            }),
        );
        registry.register(PRIVATE_DATA, Arc::new(PrivateData));
        registry
    }

    /// Registers `chaincode` under `name`, returning the implementation it replaced, if any.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        chaincode: Arc<dyn Chaincode>,
    ) -> Option<Arc<dyn Chaincode>> {
        self.chaincodes.insert(name.into(), chaincode)
    }

    /// The chaincode registered under `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Chaincode>> {
        self.chaincodes.get(name).cloned()
    }

    /// Whether a chaincode is registered under `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.chaincodes.contains_key(name)
    }

    /// The registered names, in byte order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.chaincodes.keys().map(String::as_str)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}
