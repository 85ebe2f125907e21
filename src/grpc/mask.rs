//! Update masks: which fields an update changes.

use crate::domain::error::{Echo, Violation, ViolationReason, Violations};

/// The most paths an update mask lists: more than any message has fields,
/// and each unknown one would be a violation of its own.
pub const MAX_PATHS: usize = 32;

/// The fields the mask of the update call `call` (its gRPC path) may name:
/// the REST gateway takes these, and only these, from an update's body.
pub fn updatable(call: &str) -> Option<&'static [&'static str]> {
    match call.rsplit('/').next()? {
        "UpdateAllocation" => Some(&super::allocation::UPDATABLE),
        "UpdateEmployee" => Some(&super::fleet::EMPLOYEE_FIELDS),
        "UpdateDriver" => Some(&super::fleet::DRIVER_FIELDS),
        "UpdateVehicle" => Some(&super::fleet::VEHICLE_FIELDS),
        _ => None,
    }
}

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
    if paths.len() > MAX_PATHS {
        violations.push(Violation::new(
            "update_mask.paths",
            ViolationReason::TooLong,
            format!(
                "update_mask lists {} paths; at most {MAX_PATHS} are allowed, of {names}",
                paths.len()
            ),
        ));
    } else if paths.is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_of_thousands_of_paths_is_one_violation() {
        let mut violations = Violations::new();
        let paths: Vec<String> = (0..10_000).map(|i| format!("nope{i}")).collect();
        let chosen = fields(
            "allocation",
            &paths,
            &["purpose"],
            &[false],
            &mut violations,
        );
        assert!(chosen.is_empty());
        let violations = violations.into_vec();
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].reason, ViolationReason::TooLong);

        let mut violations = Violations::new();
        let paths = vec!["purpose".to_owned(); MAX_PATHS];
        let chosen = fields(
            "allocation",
            &paths,
            &["purpose"],
            &[false],
            &mut violations,
        );
        assert_eq!(chosen, ["purpose"]);
        assert!(violations.is_empty());
    }
}
