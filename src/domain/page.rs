//! Pagination: page sizes, and opaque keyset page tokens.
//!
//! A token holds the sort key of the last row served, so the next page starts
//! strictly after it: rows written between pages never make a walk skip or
//! repeat a row, unlike offsets. It also holds a digest of the list and its
//! filters, so a token cannot be replayed against a different query, and it
//! is signed (HMAC-SHA256, cut to 128 bits) under a key the store keeps, so
//! a truncated, altered or forged token is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::{DomainError, Violation, ViolationReason};

/// Page size when the request gives none.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page served; larger requests are lowered to it.
pub const MAX_PAGE_SIZE: usize = 500;

/// Token layout version; bump it when the layout changes so old tokens are
/// refused cleanly instead of misread.
const TOKEN_VERSION: u8 = 2;

/// Bytes of the signature at the end of a token.
const MAC_BYTES: usize = 16;

/// The key page tokens are signed with: kept in the store, so that it
/// survives restarts and every replica signs and checks with the same one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PageKey([u8; 32]);

impl PageKey {
    pub const LEN: usize = 32;

    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key from a configured secret of any length (`PAGE_TOKEN_KEY`).
    pub fn from_secret(secret: &str) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(secret.as_bytes()).into())
    }

    /// The key from its stored bytes; `None` if they are not a key.
    pub fn from_stored(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, payload: &[u8]) -> hmac::Hmac<sha2::Sha256> {
        use hmac::{KeyInit as _, Mac as _};
        let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(&self.0)
            .expect("HMAC takes keys of any length");
        mac.update(payload);
        mac
    }
}

impl std::fmt::Debug for PageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageKey(..)")
    }
}

/// A validated page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(usize);

impl PageSize {
    /// Interprets a request's `page_size`: 0 means the default, larger than
    /// the maximum means the maximum, negative is refused.
    pub fn from_request(field: &str, value: i32) -> Result<Self, Violation> {
        match usize::try_from(value) {
            Err(_) => Err(Violation::new(
                field,
                ViolationReason::InvalidPageSize,
                format!("{field} must not be negative, got {value}"),
            )),
            Ok(0) => Ok(Self(DEFAULT_PAGE_SIZE)),
            Ok(n) => Ok(Self(n.min(MAX_PAGE_SIZE))),
        }
    }

    /// The number of rows.
    pub fn get(self) -> usize {
        self.0
    }
}

/// One page to read: at most `size` rows strictly after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<C> {
    pub size: usize,
    pub after: Option<C>,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Whether rows follow this page.
    pub has_more: bool,
    /// How many rows match the query on all pages.
    pub total_size: u64,
}

impl<T> Page<T> {
    /// Builds a page from up to `size + 1` rows read in order: the extra row
    /// only says that there is more.
    pub fn from_rows(mut rows: Vec<T>, size: usize, total_size: u64) -> Self {
        let has_more = rows.len() > size;
        rows.truncate(size);
        Self {
            items: rows,
            has_more,
            total_size,
        }
    }
}

/// The lists that hand out page tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ListKind {
    AllocationHistory = 1,
    Employees = 2,
    Vehicles = 3,
    AvailableVehicles = 4,
    Drivers = 5,
    VehicleBlocks = 6,
    Events = 7,
}

/// A sort key that can be carried in a page token.
pub trait CursorKey: Sized {
    fn write(&self, out: &mut Vec<u8>);
    fn read(bytes: &[u8]) -> Option<Self>;
}

/// Lists in id order continue after an id.
impl CursorKey for String {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }

    fn read(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// The event log continues after a sequence.
impl CursorKey for u64 {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }

    fn read(bytes: &[u8]) -> Option<Self> {
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }
}

/// One list with its filters, as page tokens see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    key: PageKey,
    kind: ListKind,
    fingerprint: u64,
}

impl PageToken {
    /// Tokens for `kind`, bound to the filter values in `filters`, signed
    /// with `key`.
    pub fn for_query<S: AsRef<[u8]>>(key: &PageKey, kind: ListKind, filters: &[S]) -> Self {
        let parts: Vec<&[u8]> = filters.iter().map(AsRef::as_ref).collect();
        Self {
            key: *key,
            kind,
            fingerprint: fingerprint(&parts),
        }
    }

    /// The token that continues after `cursor`.
    pub fn encode<C: CursorKey>(&self, cursor: &C) -> String {
        use hmac::Mac as _;
        let mut bytes = Vec::with_capacity(64);
        bytes.push(TOKEN_VERSION);
        bytes.push(self.kind as u8);
        bytes.extend_from_slice(&self.fingerprint.to_be_bytes());
        cursor.write(&mut bytes);
        let tag = self.key.mac(&bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..MAC_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The cursor in a request's `page_token`; `None` for the first page.
    pub fn decode<C: CursorKey>(&self, field: &str, token: &str) -> Result<Option<C>, DomainError> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || {
            DomainError::invalid(Violation::new(
                field,
                ViolationReason::InvalidPageToken,
                format!(
                    "{field} is not a token this list issued; pass next_page_token from the previous page unchanged"
                ),
            ))
        };
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        // The signature first: nothing of a token this service did not
        // sign is looked at.
        let (payload, tag) = bytes
            .split_at_checked(bytes.len().checked_sub(MAC_BYTES).ok_or_else(invalid)?)
            .ok_or_else(invalid)?;
        {
            use hmac::Mac as _;
            self.key
                .mac(payload)
                .verify_truncated_left(tag)
                .map_err(|_| invalid())?;
        }
        let [version, kind, rest @ ..] = payload else {
            return Err(invalid());
        };
        let (fingerprint, cursor) = rest.split_first_chunk::<8>().ok_or_else(invalid)?;
        if *version != TOKEN_VERSION || *kind != self.kind as u8 {
            return Err(invalid());
        }
        if u64::from_be_bytes(*fingerprint) != self.fingerprint {
            return Err(DomainError::invalid(Violation::new(
                field,
                ViolationReason::PageTokenMismatch,
                format!(
                    "{field} was issued for a request with other filters; send the same filters as for the first page, or start again without a page token"
                ),
            )));
        }
        C::read(cursor).map(Some).ok_or_else(invalid)
    }
}

/// A stable 64-bit digest (FNV-1a) of `parts`, each framed by its length so
/// that ("ab", "c") and ("a", "bc") differ.
///
/// Stable across builds and machines, unlike `std`'s hasher, because tokens
/// and idempotency keys outlive the process that made them and are read by
/// other replicas.
pub fn fingerprint(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for part in parts {
        feed(&(part.len() as u64).to_be_bytes());
        feed(part);
    }
    hash
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::domain::history::HistoryCursor;

    fn reason(err: DomainError) -> &'static str {
        err.reason()
    }

    const KEY: PageKey = PageKey([7; 32]);

    #[test]
    fn page_size_defaults_caps_and_refuses_negatives() {
        let size = |v| PageSize::from_request("page_size", v).map(PageSize::get);
        assert_eq!(size(0), Ok(50));
        assert_eq!(size(1), Ok(1));
        assert_eq!(size(500), Ok(500));
        assert_eq!(size(501), Ok(500));
        assert_eq!(size(i32::MAX), Ok(500));
        let err = size(-1).unwrap_err();
        assert_eq!(err.reason, ViolationReason::InvalidPageSize);
        assert_eq!(err.field, "page_size");
    }

    #[test]
    fn tokens_round_trip_their_cursor() {
        let query = PageToken::for_query(
            &KEY,
            ListKind::AllocationHistory,
            &["emp-1", "", "", "", ""],
        );
        let cursor = HistoryCursor {
            date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            id: "0193-abc".into(),
        };
        let token = query.encode(&cursor);
        assert_eq!(query.decode("page_token", &token), Ok(Some(cursor)));
        assert_eq!(query.decode::<HistoryCursor>("page_token", ""), Ok(None));

        let ids = PageToken::for_query::<&str>(&KEY, ListKind::Vehicles, &[]);
        let token = ids.encode(&"veh-0042".to_string());
        assert_eq!(
            ids.decode("page_token", &token),
            Ok(Some("veh-0042".to_string()))
        );
    }

    #[test]
    fn a_token_with_other_filters_is_refused() {
        let first = PageToken::for_query(&KEY, ListKind::Employees, &["Sales"]);
        let other = PageToken::for_query(&KEY, ListKind::Employees, &["Finance"]);
        let token = first.encode(&"emp-1".to_string());
        let err = other.decode::<String>("page_token", &token).unwrap_err();
        assert_eq!(reason(err), "PAGE_TOKEN_MISMATCH");
    }

    #[test]
    fn a_token_of_another_list_or_garbage_is_refused() {
        let employees = PageToken::for_query::<&str>(&KEY, ListKind::Employees, &[]);
        let vehicles = PageToken::for_query::<&str>(&KEY, ListKind::Vehicles, &[]);
        let token = employees.encode(&"emp-1".to_string());
        let err = vehicles.decode::<String>("page_token", &token).unwrap_err();
        assert_eq!(reason(err), "INVALID_PAGE_TOKEN");
        for garbage in ["x", "!!!", "AAAA", "AQEAAAAAAAAAAA"] {
            let err = employees
                .decode::<String>("page_token", garbage)
                .unwrap_err();
            assert_eq!(reason(err), "INVALID_PAGE_TOKEN", "{garbage}");
        }
        let history = PageToken::for_query::<&str>(&KEY, ListKind::AllocationHistory, &[]);
        let short = history.encode(&"id".to_string());
        let err = history
            .decode::<HistoryCursor>("page_token", &short)
            .unwrap_err();
        assert_eq!(reason(err), "INVALID_PAGE_TOKEN");
    }

    #[test]
    fn truncated_altered_or_foreign_tokens_are_refused() {
        let tokens = PageToken::for_query(&KEY, ListKind::Employees, &["Sales"]);
        let token = tokens.encode(&"emp-00042".to_string());
        assert!(tokens.decode::<String>("page_token", &token).is_ok());
        for cut in 1..token.len() {
            let err = tokens
                .decode::<String>("page_token", &token[..token.len() - cut])
                .unwrap_err();
            assert_eq!(reason(err), "INVALID_PAGE_TOKEN", "cut {cut}");
        }
        // Every byte flipped in turn.
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            let err = tokens
                .decode::<String>("page_token", &URL_SAFE_NO_PAD.encode(altered))
                .unwrap_err();
            assert_eq!(reason(err), "INVALID_PAGE_TOKEN", "byte {i}");
        }
        // Signed with another key, e.g. another deployment's.
        let foreign = PageToken::for_query(&PageKey([8; 32]), ListKind::Employees, &["Sales"]);
        let err = tokens
            .decode::<String>("page_token", &foreign.encode(&"emp-00042".to_string()))
            .unwrap_err();
        assert_eq!(reason(err), "INVALID_PAGE_TOKEN");
        assert_ne!(PageKey::from_secret("a"), PageKey::from_secret("b"));
    }

    #[test]
    fn fingerprints_frame_their_parts() {
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(fingerprint(&[b"a", b"b"]), fingerprint(&[b"a", b"b"]));
        // Pinned so that a change of algorithm, which would invalidate every
        // token and idempotency key in flight, cannot pass unnoticed.
        assert_eq!(fingerprint(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint(&[b""]), 0xa8c7_f832_281a_39c5);
    }

    #[test]
    fn page_from_rows_uses_the_extra_row_only_as_a_marker() {
        let page = Page::from_rows(vec![1, 2, 3], 2, 10);
        assert_eq!(page.items, vec![1, 2]);
        assert!(page.has_more);
        let last = Page::from_rows(vec![1, 2], 2, 2);
        assert!(!last.has_more);
    }
}
