//! Update masks: which fields an update changes.

use crate::domain::error::{Echo, Violation, ViolationReason, Violations};

/// The fields of `updatable` that an update with `paths` changes. With no
/// paths, those that are set in the message (`set`, in the same order);
/// `"*"` means all of them. Unknown paths and an update that changes
/// nothing are recorded in `violations`.
pub fn fields<'a>(
    message: &str,
    paths: &[String],
    updatable: &[&'a str],
    set: &[bool],
    violations: &mut Violations,
) -> Vec<&'a str> {
    let names = updatable.join(", ");
    let mut fields: Vec<&str> = Vec::new();
    if paths.is_empty() {
        fields.extend(
            updatable
                .iter()
                .zip(set)
                .filter(|(_, set)| **set)
                .map(|(f, _)| *f),
        );
        if fields.is_empty() {
            violations.push(Violation::new(
                "update_mask",
                ViolationReason::NothingToUpdate,
                format!(
                    "update_mask is empty and {message} sets none of {names}: nothing to update"
                ),
            ));
        }
    } else {
        for path in paths {
            match updatable.iter().find(|f| **f == path.as_str()) {
                Some(f) => fields.push(f),
                None if path == "*" => fields.extend(updatable),
                None => violations.push(Violation::new(
                    "update_mask.paths",
                    ViolationReason::UnknownFieldPath,
                    format!(
                        "update_mask path {:?} cannot be updated; the updatable fields are {names}",
                        Echo(path)
                    ),
                )),
            }
        }
    }
    let mut seen = Vec::with_capacity(fields.len());
    fields.retain(|f| {
        let first = !seen.contains(f);
        seen.push(*f);
        first
    });
    fields
}
