//! Who may call what: the bearer tokens a deployment accepts (`api_keys` for
//! uploads, cancels and deletes; `admin_token` for `/internal/`), checked in
//! constant time.
//!
//! Every configured token is kept as its SHA-256 and a presented token is
//! hashed the same way, so the comparison is over 32 bytes whatever the
//! lengths, and `subtle` makes it take the same time whether it fails at the
//! first byte or the last; all configured tokens are compared, never stopping
//! at a match.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A set of accepted bearer tokens; empty means the guard is off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens(Vec<[u8; 32]>);

impl Tokens {
    /// The tokens in `list`, separated by commas (spaces around them ignored;
    /// empty entries dropped).
    pub fn parse(list: &str) -> Self {
        Self(
            list.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(digest)
                .collect(),
        )
    }

    /// Whether no token is configured (anyone may call).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an `Authorization` header value carries one of the tokens
    /// (`Bearer <token>`, the scheme in any case).
    pub fn permit(&self, authorization: Option<&str>) -> bool {
        let Some(token) = authorization.and_then(bearer) else {
            return false;
        };
        let presented = digest(token);
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |any, known| {
                any | known.ct_eq(&presented)
            })
            .into()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_configured_token_is_accepted_and_nothing_else() {
        let tokens = Tokens::parse(" first-key , second-key,,");
        assert!(!tokens.is_empty());
        assert!(tokens.permit(Some("Bearer first-key")));
        assert!(tokens.permit(Some("bearer second-key")));
        for refused in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Bearer first"),
            Some("Bearer first-key2"),
            Some("Basic first-key"),
            Some("first-key"),
        ] {
            assert!(!tokens.permit(refused), "{refused:?}");
        }
    }

    #[test]
    fn an_empty_list_configures_no_token() {
        assert!(Tokens::parse("").is_empty());
        assert!(Tokens::parse(" , ").is_empty());
        assert!(!Tokens::parse("").permit(Some("Bearer x")));
    }
}
