//! Slice tickets: what `GetSliceTicket` hands out and a node manager's `Ticket` accepts. PLC signed an XML
//! document; here a ticket is `base64url(JSON claims).hex(HMAC-SHA256)` under a key derived from the seed.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub slice_id: i32,
    pub name: String,
    pub node_ids: Vec<i32>,
    pub expires: f64,
    pub issued: f64,
}

#[derive(Debug, Clone)]
pub struct Tickets {
    key: [u8; 32],
}

impl Tickets {
    pub fn new(seed: u64) -> Self {
        let mut key = [0u8; 32];
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&super::random::key(seed, "ticket-key", &[i as u64]).to_le_bytes());
        }
        Self { key }
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload.as_bytes());
        mac
    }

    pub fn issue(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let tag = hex::encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// The claims of a ticket this testbed issued, or why not.
    pub fn verify(&self, ticket: &str) -> Result<Claims, String> {
        let (payload, tag) = ticket.trim().split_once('.').ok_or("not a ticket")?;
        let tag = hex::decode(tag).map_err(|_| "not a ticket")?;
        self.mac(payload).verify_slice(&tag).map_err(|_| "the ticket's signature does not verify")?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| "not a ticket")?;
        serde_json::from_slice(&bytes).map_err(|e| format!("malformed ticket: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_verify_and_forgeries_do_not() {
        let tickets = Tickets::new(1);
        let claims = Claims {
            slice_id: 7,
            name: "princeton_x".into(),
            node_ids: vec![1, 2],
            expires: 10.0,
            issued: 1.0,
        };
        let ticket = tickets.issue(&claims);
        assert_eq!(tickets.verify(&ticket).unwrap(), claims);
        let (payload, tag) = ticket.split_once('.').unwrap();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(br#"{"slice_id":8,"name":"x","node_ids":[],"expires":1e12,"issued":0}"#);
        assert!(tickets.verify(&format!("{forged_payload}.{tag}")).is_err());
        assert!(Tickets::new(2).verify(&ticket).is_err(), "another testbed's key");
        assert!(tickets.verify(payload).is_err());
    }
}
