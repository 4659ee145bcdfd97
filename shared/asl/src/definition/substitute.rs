//! `DefinitionSubstitutions`: `${Name}` placeholders in the definition text
//! are replaced before the text is parsed, as SAM does.

use super::DefinitionError;
use std::collections::HashMap;

/// Replaces `${Name}` placeholders with their values before parsing, as SAM's
/// `DefinitionSubstitutions` does. An unknown placeholder is an error.
pub fn substitute(
    definition: &str,
    substitutions: &HashMap<String, String>,
) -> Result<String, DefinitionError> {
    let mut out = String::with_capacity(definition.len());
    let mut rest = definition;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !valid_name {
            out.push_str("${");
            rest = after;
            continue;
        }
        match substitutions.get(name) {
            Some(v) => out.push_str(v),
            None => {
                return Err(DefinitionError {
                    location: "/".into(),
                    message: format!(
                    "definition substitution '${{{name}}}' has no value in DefinitionSubstitutions"
                ),
                })
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
