//! The SHA-256 digests the receipt, the export and the audit trail quote.

use domain::practice::PracticeData;

/// Hex SHA-256 of `bytes`: digests on receipts and exports, session ids as stored, callback
/// message ids.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// The digest of a practice's data: SHA-256 of its JSON with keys in order (the data is a
/// sorted map, so the same data always gives the same digest).
pub fn data_digest(data: &PracticeData) -> String {
    sha256_hex(serde_json::to_string(data).unwrap_or_default().as_bytes())
}

/// The digest of a filing's payload as queued for the institution.
pub fn payload_digest(payload: &serde_json::Value) -> String {
    sha256_hex(payload.to_string().as_bytes())
}
