//! Spin variables: application variables with defaults, overridden by
//! `SPIN_VARIABLE_<NAME>` (the environment provider `spin up` uses), and
//! `{{ name }}` templates in component variables, trigger settings and
//! `allowed_outbound_hosts`.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};

use crate::manifest::VariableDef;

/// Resolved application variables.
#[derive(Clone, Debug, Default)]
pub struct Variables {
    values: BTreeMap<String, String>,
}

impl Variables {
    /// Resolves every application variable: `overrides` (name → value, as if
    /// `SPIN_VARIABLE_<NAME>` were set) first, then the process environment,
    /// then the default.
    ///
    /// # Errors
    /// When a required variable has no value or a name is not a valid Spin variable name.
    pub fn resolve(
        defs: &BTreeMap<String, VariableDef>,
        overrides: &BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let mut values = BTreeMap::new();
        for (name, def) in defs {
            check_name(name)?;
            let env_name = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
            let value = overrides
                .get(name)
                .cloned()
                .or_else(|| std::env::var(&env_name).ok())
                .or_else(|| def.default.clone());
            match value {
                Some(v) => {
                    values.insert(name.clone(), v);
                }
                None if def.required => {
                    bail!("required variable {name:?} has no value (set {env_name})")
                }
                None => {}
            }
        }
        Ok(Self { values })
    }

    /// Renders a template such as `"redis://{{ host }}:6379"`.
    ///
    /// # Errors
    /// When the template names an undefined variable or is malformed.
    pub fn render(&self, template: &str) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| anyhow!("unclosed {{{{ in {template:?}"))?;
            let name = after[..end].trim();
            let value = self
                .values
                .get(name)
                .ok_or_else(|| anyhow!("{template:?} refers to undefined variable {name:?}"))?;
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Whether `name` is a valid Spin variable name: lower-case ASCII letters,
/// digits and underscores, starting with a letter.
pub fn is_valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        bail!("invalid variable name {name:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs() -> BTreeMap<String, VariableDef> {
        let def = |default: Option<&str>, required| VariableDef {
            default: default.map(str::to_owned),
            required,
            secret: false,
        };
        BTreeMap::from([
            ("host".to_owned(), def(Some("127.0.0.1"), false)),
            ("port".to_owned(), def(Some("6379"), false)),
        ])
    }

    #[test]
    fn overrides_beat_defaults_and_templates_render() {
        let overrides = BTreeMap::from([("port".to_owned(), "7000".to_owned())]);
        let vars = Variables::resolve(&defs(), &overrides).expect("resolve");
        assert_eq!(
            vars.render("redis://{{ host }}:{{port}}").expect("render"),
            "redis://127.0.0.1:7000"
        );
    }

    #[test]
    fn templates_naming_undefined_variables_are_errors() {
        let vars = Variables::resolve(&defs(), &BTreeMap::new()).expect("resolve");
        assert!(vars.render("{{ nope }}").is_err());
        assert!(vars.render("{{ host ").is_err());
    }

    #[test]
    fn a_required_variable_without_a_value_is_an_error() {
        let defs = BTreeMap::from([(
            "secret_key".to_owned(),
            VariableDef {
                default: None,
                required: true,
                secret: true,
            },
        )]);
        assert!(Variables::resolve(&defs, &BTreeMap::new()).is_err());
    }
}
