//! The job identifier: a random UUID, parsed once at the edge so that every
//! key built from it is known to be well formed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// A job's identity. Only random (v4) UUIDs in hyphenated lower-case form
/// are accepted, so an id can never smuggle key separators or path segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(Uuid);

/// A string that is not a job id.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("not a job id: expected a lower-case hyphenated UUID v4")]
pub struct InvalidJobId;

impl JobId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses the canonical form (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`, lower case).
    ///
    /// # Errors
    /// [`InvalidJobId`] for anything else, including upper-case or braced forms,
    /// so that one job has exactly one spelling in keys and URLs.
    pub fn parse(s: &str) -> Result<Self, InvalidJobId> {
        let uuid = Uuid::try_parse(s).map_err(|_| InvalidJobId)?;
        let canonical = uuid.hyphenated().to_string();
        if canonical != s || uuid.get_version_num() != 4 {
            return Err(InvalidJobId);
        }
        Ok(Self(uuid))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for JobId {
    type Err = InvalidJobId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for JobId {
    type Error = InvalidJobId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> Self {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_id_round_trips_through_its_display_form() {
        let id = JobId::new_random();
        assert_eq!(JobId::parse(&id.to_string()), Ok(id));
    }

    #[test]
    fn non_canonical_spellings_are_rejected() {
        let id = JobId::new_random().to_string();
        for bad in [
            id.to_uppercase(),
            format!("{{{id}}}"),
            id.replace('-', ""),
            format!("{id}/../x"),
            String::new(),
            "not-an-id".to_owned(),
            // a valid UUID, but version 1 rather than random
            "c232ab00-9414-11ec-b3c8-9f6bdeced846".to_owned(),
        ] {
            assert_eq!(JobId::parse(&bad), Err(InvalidJobId), "{bad}");
        }
    }
}
