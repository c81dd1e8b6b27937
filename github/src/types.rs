//! Validated newtypes for GitHub identifiers, converted from strings in exactly one place.

use std::fmt;

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("invalid repository `{value}`: expected `owner/name`")]
    Repo { value: String },
    #[error("invalid commit sha `{value}`: expected 7 to 64 hexadecimal characters")]
    Sha { value: String },
}

/// A repository as `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName {
    owner: String,
    name: String,
}

impl RepoName {
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl TryFrom<&str> for RepoName {
    type Error = IdError;

    fn try_from(value: &str) -> Result<Self, IdError> {
        match value.split_once('/') {
            Some((owner, name)) if valid_segment(owner) && valid_segment(name) => {
                Ok(RepoName { owner: owner.to_owned(), name: name.to_owned() })
            }
            _ => Err(IdError::Repo { value: value.to_owned() }),
        }
    }
}

impl std::str::FromStr for RepoName {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        RepoName::try_from(s)
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A commit sha (full or abbreviated), lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommitSha(String);

impl CommitSha {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for CommitSha {
    type Error = IdError;

    fn try_from(value: &str) -> Result<Self, IdError> {
        if (7..=64).contains(&value.len()) && value.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(CommitSha(value.to_ascii_lowercase()))
        } else {
            Err(IdError::Sha { value: value.to_owned() })
        }
    }
}

impl fmt::Display for CommitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

numeric_id!(
    /// The id of a check run (store it to complete the run later).
    CheckRunId
);
numeric_id!(
    /// The id of an issue or PR comment.
    CommentId
);
numeric_id!(
    /// The number of an issue.
    IssueNumber
);
numeric_id!(
    /// The number of a pull request.
    PrNumber
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_are_owner_slash_name() {
        let repo = RepoName::try_from("acme/persona-lab").unwrap();
        assert_eq!((repo.owner(), repo.name()), ("acme", "persona-lab"));
        for bad in ["acme", "/x", "acme/", "a/b/c", "a b/c", "../x"] {
            assert!(RepoName::try_from(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shas_are_hex() {
        assert_eq!(CommitSha::try_from("ABCDEF1").unwrap().as_str(), "abcdef1");
        assert!(CommitSha::try_from("xyz1234").is_err());
        assert!(CommitSha::try_from("abc").is_err());
    }
}
