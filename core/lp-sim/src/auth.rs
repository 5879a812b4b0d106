//! AppJWT (Sentinel) and ConsumerJWS (IdP) issuing and validation.
//!
//! The RSA key in `sim_key.pem` is a simulator-only key generated for this crate. It is **not
//! a secret** and protects nothing: anyone can mint tokens this simulator accepts.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::SimError;

/// `kid` of every token the simulator signs (the documented LivePerson value).
pub(crate) const KID: &str = "appjwt-13-05-17";
const PRIVATE_KEY_PEM: &str = include_str!("sim_key.pem");
const MODULUS_B64URL: &str = include_str!("sim_key_n.txt");
const EXPONENT_B64URL: &str = "AQAB";

/// Claims of an AppJWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AppClaims {
    #[serde(default)]
    pub(crate) aud: Option<String>,
    #[serde(default)]
    pub(crate) azp: Option<String>,
    #[serde(default)]
    pub(crate) scope: Option<String>,
    #[serde(default)]
    pub(crate) iss: Option<String>,
    pub(crate) exp: u64,
    #[serde(default)]
    pub(crate) iat: Option<u64>,
}

/// Claims of a ConsumerJWS.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JwsClaims {
    pub(crate) account_id: String,
    pub(crate) ext_consumer_id: String,
    pub(crate) lp_consumer_id: String,
}

/// The signing and verification keys.
pub(crate) struct Keys {
    enc: EncodingKey,
    dec: DecodingKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(simulator RSA key)")
    }
}

/// Why an AppJWT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppJwtError {
    /// Bad signature, expired, malformed, wrong audience/azp.
    Invalid,
    /// `iss` absent or not `Sentinel` (errorCode 40001).
    BadClaims,
}

impl Keys {
    pub(crate) fn load() -> Result<Self, SimError> {
        let enc = EncodingKey::from_rsa_pem(PRIVATE_KEY_PEM.as_bytes())
            .map_err(|e| SimError::Key(e.to_string()))?;
        let dec = DecodingKey::from_rsa_components(MODULUS_B64URL.trim(), EXPONENT_B64URL)
            .map_err(|e| SimError::Key(e.to_string()))?;
        Ok(Self { enc, dec })
    }

    fn header() -> Header {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(KID.to_string());
        h.typ = Some("JWT".to_string());
        h
    }

    pub(crate) fn sign_app_jwt(
        &self,
        account_id: &str,
        client_id: &str,
        iat: u64,
        ttl: u64,
    ) -> Result<String, SimError> {
        let claims = AppClaims {
            aud: Some(account_id.to_string()),
            azp: Some(client_id.to_string()),
            scope: Some("msg.consumer".into()),
            iss: Some("Sentinel".into()),
            exp: iat.saturating_add(ttl),
            iat: Some(iat),
        };
        jsonwebtoken::encode(&Self::header(), &claims, &self.enc)
            .map_err(|e| SimError::Key(e.to_string()))
    }

    pub(crate) fn sign_consumer_jws(
        &self,
        account_id: &str,
        ext_consumer_id: &str,
    ) -> Result<(String, String), SimError> {
        let lp = lp_consumer_id(account_id, ext_consumer_id);
        let claims = JwsClaims {
            account_id: account_id.to_string(),
            ext_consumer_id: ext_consumer_id.to_string(),
            lp_consumer_id: lp.clone(),
        };
        let t = jsonwebtoken::encode(&Self::header(), &claims, &self.enc)
            .map_err(|e| SimError::Key(e.to_string()))?;
        Ok((t, lp))
    }

    /// Verifies signature and expiry (against `now`, LivePerson's clock in epoch seconds), then
    /// the LivePerson claims.
    pub(crate) fn verify_app_jwt(
        &self,
        token: &str,
        account_id: &str,
        client_id: &str,
        now: u64,
    ) -> Result<AppClaims, AppJwtError> {
        let mut v = Validation::new(Algorithm::RS256);
        v.leeway = 0;
        v.validate_aud = false;
        // Expiry is checked below on LivePerson's clock, which a fault may skew.
        v.validate_exp = false;
        v.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<AppClaims>(token, &self.dec, &v)
            .map_err(|_| AppJwtError::Invalid)?;
        let c = data.claims;
        if c.exp <= now {
            return Err(AppJwtError::Invalid);
        }
        if c.iss.as_deref() != Some("Sentinel") {
            return Err(AppJwtError::BadClaims);
        }
        if c.aud.as_deref() != Some(account_id) || c.azp.as_deref() != Some(client_id) {
            return Err(AppJwtError::Invalid);
        }
        Ok(c)
    }

    pub(crate) fn verify_consumer_jws(&self, token: &str) -> Option<JwsClaims> {
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_aud = false;
        v.validate_exp = false;
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<JwsClaims>(token, &self.dec, &v)
            .ok()
            .map(|d| d.claims)
    }

    /// The JWKS document (`/sentinel/well-known/jwks`).
    pub(crate) fn jwks() -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "RSA",
                "kid": KID,
                "use": "sig",
                "alg": "RS256",
                "n": MODULUS_B64URL.trim(),
                "e": EXPONENT_B64URL,
            }]
        })
    }
}

/// The deterministic `lp_consumer_id` of an external consumer: 64 lowercase hex chars,
/// `sha256(account_id + ":" + ext_consumer_id)`.
pub fn lp_consumer_id(account_id: &str, ext_consumer_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(account_id.as_bytes());
    h.update(b":");
    h.update(ext_consumer_id.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_jwt_roundtrip_and_claims() {
        let k = Keys::load().unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let t = k.sign_app_jwt("123", "cid", now, 3600).unwrap();
        let h = jsonwebtoken::decode_header(&t).unwrap();
        assert_eq!(h.kid.as_deref(), Some(KID));
        let c = k.verify_app_jwt(&t, "123", "cid", now).unwrap();
        assert_eq!(c.exp - c.iat.unwrap(), 3600);
        assert_eq!(
            k.verify_app_jwt(&t, "999", "cid", now).unwrap_err(),
            AppJwtError::Invalid
        );
        let expired = k.sign_app_jwt("123", "cid", now - 7200, 3600).unwrap();
        assert!(k.verify_app_jwt(&expired, "123", "cid", now).is_err());
        // On a clock two hours behind, the same token is still good.
        assert!(k.verify_app_jwt(&expired, "123", "cid", now - 7200).is_ok());
    }

    #[test]
    fn jws_roundtrip() {
        let k = Keys::load().unwrap();
        let (t, lp) = k.sign_consumer_jws("123", "ext").unwrap();
        assert_eq!(lp.len(), 64);
        let c = k.verify_consumer_jws(&t).unwrap();
        assert_eq!(c.lp_consumer_id, lp);
        assert!(k.verify_consumer_jws("x.y.z").is_none());
    }
}
