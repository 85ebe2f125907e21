//! Every change to a booking is decided here, once for every backend.
//!
//! A backend applies a [`BookingCommand`] in one transaction: it reads the
//! booking the command names (or the one an earlier create with the same
//! idempotency key made), then the facts of the slot the command would take
//! ([`BookingCommand::slot`]), [`decide`] turns command and facts into a
//! [`BookingWrite`] with its event (or refuses, or answers a retry), and the
//! backend writes exactly that. The unique indexes stay as a backstop.

use chrono::{DateTime, NaiveDate, Utc};

use super::admin::check_bookable;
use super::allocation::{
    Allocation, AllocationDeletion, AllocationUpdate, IdempotencyKey, NewAllocation,
    allocation_not_found,
};
use super::error::{DomainError, Resource};
use super::event::NewEvent;
use super::fleet::{Assignment, Employee, Vehicle, VehicleBlock};

/// A change to a booking, validated for form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookingCommand {
    Create(NewAllocation),
    Update(AllocationUpdate),
    Cancel(AllocationDeletion),
}

/// What a backend reads first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// The booking with this id.
    Booking(&'a str),
    /// The idempotency key with this request id, if stored after
    /// `live_after`, and the booking it made.
    Key {
        request_id: &'a str,
        live_after: DateTime<Utc>,
    },
    /// Nothing: a create without a key.
    Nothing,
}

/// A slot a booking would hold: the facts that decide whether it may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub employee_id: String,
    pub vehicle_id: String,
    pub date: NaiveDate,
    /// The booking being changed, which does not stand in its own way.
    pub except: Option<String>,
}

/// What the backend read for a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BookingFacts {
    /// The booking the command names; for a create, the one an earlier
    /// request with the same key made.
    pub existing: Option<Allocation>,
    /// For a create whose key is stored: the booking id it names and the
    /// fingerprint of the request that stored it.
    pub earlier_key: Option<(String, u64)>,
    /// The slot's facts, read when [`BookingCommand::slot`] named one.
    pub employee: Option<Employee>,
    /// The vehicle (its `driver` is not read) and its driver timeline.
    pub vehicle: Option<(Vehicle, Vec<Assignment>)>,
    /// The out-of-service block covering the slot's date, if any.
    pub block: Option<VehicleBlock>,
    /// The booking holding the vehicle on the date, other than `except`.
    pub vehicle_holder: Option<String>,
    /// The booking the employee holds on the date, other than `except`.
    pub employee_holder: Option<String>,
}

/// What a backend writes for a decided command, all in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingWrite {
    /// The booking as read (`None` on create); written only in that version.
    pub before: Option<Allocation>,
    /// The booking as it is to be stored (`None` on cancel).
    pub after: Option<Allocation>,
    /// The key to store with a create, and when.
    pub key: Option<(IdempotencyKey, DateTime<Utc>)>,
    pub event: NewEvent,
}

/// A decided command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookingDecision {
    /// Write this.
    Write(Box<BookingWrite>),
    /// A retry of a create: answer with the booking made then, write
    /// nothing.
    Replay(Allocation),
}

impl BookingCommand {
    /// What to read first.
    pub fn subject(&self) -> Subject<'_> {
        match self {
            Self::Create(new) => match &new.idempotency_key {
                Some(key) => Subject::Key {
                    request_id: &key.request_id,
                    live_after: IdempotencyKey::expired_before(new.now),
                },
                None => Subject::Nothing,
            },
            Self::Update(update) => Subject::Booking(&update.id),
            Self::Cancel(deletion) => Subject::Booking(&deletion.id),
        }
    }

    /// The slot whose facts decide the command, given what the first read
    /// found: `None` when none is needed (a retry, a cancel, an update that
    /// stays put, or a booking not found).
    pub fn slot(&self, facts: &BookingFacts) -> Option<Slot> {
        match self {
            Self::Create(new) if facts.earlier_key.is_none() => Some(Slot {
                employee_id: new.employee_id.clone(),
                vehicle_id: new.vehicle_id.clone(),
                date: new.date,
                except: None,
            }),
            Self::Update(update) => {
                let existing = facts.existing.as_ref()?;
                update.moves(existing).then(|| {
                    let (vehicle_id, date) = update.target(existing);
                    Slot {
                        employee_id: existing.employee_id.clone(),
                        vehicle_id: vehicle_id.to_owned(),
                        date,
                        except: Some(existing.id.clone()),
                    }
                })
            }
            _ => None,
        }
    }
}

/// Decides `command` from `facts`.
pub fn decide(
    command: &BookingCommand,
    facts: BookingFacts,
) -> Result<BookingDecision, DomainError> {
    match command {
        BookingCommand::Create(new) => decide_create(new, facts),
        BookingCommand::Update(update) => {
            let before = facts
                .existing
                .clone()
                .ok_or_else(|| allocation_not_found(&update.id))?;
            update.check(&before)?;
            let driver = if update.moves(&before) {
                let (vehicle_id, date) = update.target(&before);
                Some(check_slot(&before.employee_id, vehicle_id, date, &facts)?)
            } else {
                None
            };
            let after = update.apply(&before, driver);
            let event =
                NewEvent::allocation(Some(&before), Some(&after), update.now, &update.origin);
            Ok(BookingDecision::Write(Box::new(BookingWrite {
                before: Some(before),
                after: Some(after),
                key: None,
                event,
            })))
        }
        BookingCommand::Cancel(deletion) => {
            let before = facts
                .existing
                .ok_or_else(|| allocation_not_found(&deletion.id))?;
            deletion.check(&before)?;
            let event = NewEvent::allocation(Some(&before), None, deletion.now, &deletion.origin);
            Ok(BookingDecision::Write(Box::new(BookingWrite {
                before: Some(before),
                after: None,
                key: None,
                event,
            })))
        }
    }
}

fn decide_create(new: &NewAllocation, facts: BookingFacts) -> Result<BookingDecision, DomainError> {
    if let (Some(key), Some((allocation_id, fingerprint))) =
        (&new.idempotency_key, &facts.earlier_key)
    {
        // A retry is answered even after midnight has made its date history.
        key.check_same_request(*fingerprint)?;
        return match facts.existing {
            Some(made) => Ok(BookingDecision::Replay(made)),
            None => Err(DomainError::IdempotentAllocationDeleted {
                request_id: key.request_id.clone(),
                allocation_id: allocation_id.clone(),
            }),
        };
    }
    new.check_window()?;
    let driver_id = check_slot(&new.employee_id, &new.vehicle_id, new.date, &facts)?;
    let allocation = new.clone().into_allocation(driver_id);
    let event = NewEvent::allocation(None, Some(&allocation), new.now, &new.origin);
    Ok(BookingDecision::Write(Box::new(BookingWrite {
        before: None,
        after: Some(allocation),
        key: new.idempotency_key.clone().map(|key| (key, new.now)),
        event,
    })))
}

/// Checks the slot's facts: the employee and vehicle exist and may book,
/// and neither is booked that day. Returns the driver the booking carries.
fn check_slot(
    employee_id: &str,
    vehicle_id: &str,
    date: NaiveDate,
    facts: &BookingFacts,
) -> Result<String, DomainError> {
    let employee = facts
        .employee
        .as_ref()
        .ok_or_else(|| DomainError::not_found(Resource::Employee, employee_id))?;
    let (vehicle, timeline) = facts
        .vehicle
        .as_ref()
        .ok_or_else(|| DomainError::not_found(Resource::Vehicle, vehicle_id))?;
    let driver_id = check_bookable(employee, vehicle, timeline, facts.block.as_ref(), date)?;
    if let Some(holder) = &facts.vehicle_holder {
        return Err(SlotRule::Vehicle.refusal(employee_id, vehicle_id, date, holder.clone()));
    }
    if let Some(holder) = &facts.employee_holder {
        return Err(SlotRule::Employee.refusal(employee_id, vehicle_id, date, holder.clone()));
    }
    Ok(driver_id)
}

/// A unique index on bookings that a store's write broke. The write path
/// decides from the slot's facts first, so only seeding, which writes
/// bookings as they are, meets one as a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotIndex {
    /// One booking per vehicle and date.
    VehicleDate,
    /// One booking per driver and date.
    DriverDate,
    /// One booking per employee and date.
    EmployeeDate,
}

/// A booking rule that a slot index stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRule {
    /// A vehicle is never booked twice on a date.
    Vehicle,
    /// An employee holds at most one booking per date.
    Employee,
}

impl SlotIndex {
    /// The rule the index stands for. A driver drives one vehicle a day, so
    /// the (driver, date) index fires for a vehicle booked twice as well,
    /// and may fire first: the vehicle's slot is the one taken.
    pub fn rule(self) -> SlotRule {
        match self {
            Self::VehicleDate | Self::DriverDate => SlotRule::Vehicle,
            Self::EmployeeDate => SlotRule::Employee,
        }
    }
}

impl SlotRule {
    /// The field of a booking, and its value in `wanted`, that a booking
    /// holding `wanted`'s slot shares (on the same date).
    pub fn field(self, wanted: &Allocation) -> (&'static str, &str) {
        match self {
            Self::Vehicle => ("vehicle_id", &wanted.vehicle_id),
            Self::Employee => ("employee_id", &wanted.employee_id),
        }
    }

    /// Whether `other` holds the slot `wanted` would take.
    pub fn held_by(self, wanted: &Allocation, other: &Allocation) -> bool {
        other.date == wanted.date
            && other.id != wanted.id
            && match self {
                Self::Vehicle => other.vehicle_id == wanted.vehicle_id,
                Self::Employee => other.employee_id == wanted.employee_id,
            }
    }

    /// The refusal of a booking of `employee_id` and `vehicle_id` on `date`
    /// whose slot the booking `holder` takes.
    pub fn refusal(
        self,
        employee_id: &str,
        vehicle_id: &str,
        date: NaiveDate,
        holder: String,
    ) -> DomainError {
        match self {
            Self::Vehicle => DomainError::VehicleAlreadyBooked {
                vehicle_id: vehicle_id.to_owned(),
                date,
                allocation_id: holder,
            },
            Self::Employee => DomainError::EmployeeAlreadyBooked {
                employee_id: employee_id.to_owned(),
                date,
                allocation_id: holder,
            },
        }
    }

    /// The refusal of `wanted`, whose slot the booking `holder` takes.
    pub fn refused(self, wanted: &Allocation, holder: String) -> DomainError {
        self.refusal(&wanted.employee_id, &wanted.vehicle_id, wanted.date, holder)
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;

    fn booking(id: &str, employee: &str, vehicle: &str, driver: &str, day: u32) -> Allocation {
        let at = DateTime::UNIX_EPOCH;
        Allocation {
            id: id.into(),
            employee_id: employee.into(),
            vehicle_id: vehicle.into(),
            driver_id: driver.into(),
            date: NaiveDate::from_ymd_opt(2030, 1, day).unwrap(),
            purpose: String::new(),
            create_time: at,
            update_time: at,
            version: 1,
        }
    }

    #[test]
    fn each_index_stands_for_its_rule_and_the_driver_s_for_the_vehicle_s() {
        assert_eq!(SlotIndex::VehicleDate.rule(), SlotRule::Vehicle);
        assert_eq!(SlotIndex::DriverDate.rule(), SlotRule::Vehicle);
        assert_eq!(SlotIndex::EmployeeDate.rule(), SlotRule::Employee);
    }

    #[test]
    fn the_holder_shares_the_rule_s_field_and_date_and_is_another_booking() {
        let wanted = booking("b", "e1", "v1", "d1", 5);
        let cases = [
            (SlotRule::Vehicle, booking("a", "e2", "v1", "d1", 5), true),
            (SlotRule::Vehicle, booking("a", "e1", "v2", "d2", 5), false),
            (SlotRule::Vehicle, booking("a", "e2", "v1", "d1", 6), false),
            (SlotRule::Vehicle, wanted.clone(), false),
            (SlotRule::Employee, booking("a", "e1", "v2", "d2", 5), true),
            (SlotRule::Employee, booking("a", "e2", "v1", "d1", 5), false),
        ];
        for (rule, other, held) in cases {
            assert_eq!(rule.held_by(&wanted, &other), held, "{rule:?} {other:?}");
        }
        assert_eq!(SlotRule::Vehicle.field(&wanted), ("vehicle_id", "v1"));
        assert_eq!(SlotRule::Employee.field(&wanted), ("employee_id", "e1"));
    }

    #[test]
    fn the_refusal_names_the_slot_and_its_holder() {
        let wanted = booking("b", "e1", "v1", "d1", 5);
        assert_eq!(
            SlotRule::Vehicle.refused(&wanted, "a".into()),
            DomainError::VehicleAlreadyBooked {
                vehicle_id: "v1".into(),
                date: wanted.date,
                allocation_id: "a".into(),
            }
        );
        assert_eq!(
            SlotRule::Employee.refused(&wanted, "a".into()),
            DomainError::EmployeeAlreadyBooked {
                employee_id: "e1".into(),
                date: wanted.date,
                allocation_id: "a".into(),
            }
        );
    }
}

#[cfg(test)]
mod tests;
