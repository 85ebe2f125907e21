//! Upkeep of the MongoDB store: seeding, reset, the health check, the
//! page-token key.

use async_trait::async_trait;
use mongodb::Collection;
use mongodb::bson::{Document, doc};
use mongodb::error::Error as MongoError;
use mongodb::options::WriteConcern;

use super::errors::{self, duplicate_key_message, index_name};
use super::{MongoStore, documents as d, raised_in_transaction};
use super::{classify, decoded};
use crate::domain::booking::SlotIndex;
use crate::domain::event::{seeded_bookings, seeded_fleet};
use crate::domain::fleet::seeded_timeline;
use crate::domain::{Allocation, Employee, Origin, PageKey, Vehicle};
use crate::storage::{Maintenance, StoreError, StoreResult};

impl MongoStore {
    /// Turns a duplicate-key error on `wanted` into the rule it stands for
    /// ([`SlotIndex::rule`]), naming the booking in the way: one of `batch`
    /// written with it, or one already stored (the lookup runs after the
    /// failed write was rolled back, so the holder may be gone by then; the
    /// rule fired all the same).
    async fn conflict(
        &self,
        error: MongoError,
        wanted: &Allocation,
        batch: &[Allocation],
    ) -> StoreError {
        let index = match duplicate_key_message(&error).and_then(index_name) {
            Some(d::VEHICLE_DATE_UNIQUE) => SlotIndex::VehicleDate,
            Some(d::DRIVER_DATE_UNIQUE) => SlotIndex::DriverDate,
            Some(d::EMPLOYEE_DATE_UNIQUE) => SlotIndex::EmployeeDate,
            _ => return errors::classify("writing an allocation", error),
        };
        let rule = index.rule();
        let allocation_id = match batch.iter().find(|other| rule.held_by(wanted, other)) {
            Some(other) => other.id.clone(),
            None => match self
                .allocations
                .find_one(d::slot_holder(rule, wanted))
                .await
            {
                Ok(Some(holder)) => match d::id_of(d::ALLOCATIONS, &holder) {
                    Ok(id) => id,
                    Err(malformed) => {
                        return StoreError::internal("reading the slot holder", malformed);
                    }
                },
                Ok(None) => String::new(),
                Err(error) => return errors::classify("finding the slot holder", error),
            },
        };
        rule.refused(wanted, allocation_id).into()
    }
}

#[async_trait]
impl Maintenance for MongoStore {
    async fn ping(&self) -> StoreResult<()> {
        self.ensure_indexes().await?;
        self.health
            .run_command(doc! { "ping": 1 })
            .await
            .map(drop)
            .map_err(classify("pinging MongoDB"))
    }

    async fn page_token_key(&self, candidate: PageKey) -> StoreResult<PageKey> {
        let settings = &self.settings;
        let filter = d::by_id(d::PAGE_TOKEN_KEY);
        let upsert = settings
            .update_one(filter.clone(), d::page_key_upsert(candidate.bytes()))
            .upsert(true)
            .write_concern(WriteConcern::majority())
            .await;
        // Two replicas upserting at once: one inserts, the other may fail
        // on the duplicate _id; both then read the one that was stored.
        if let Err(error) = upsert
            && errors::duplicate_key_message(&error).is_none()
        {
            return Err(classify("storing the page-token key")(error));
        }
        let stored = settings
            .find_one(filter)
            .await
            .map_err(classify("reading the page-token key"))?
            .ok_or_else(|| {
                StoreError::internal(
                    "reading the page-token key",
                    std::io::Error::other("the key vanished after it was stored"),
                )
            })?;
        let bytes = decoded(d::page_key_from(&stored))?;
        PageKey::from_stored(&bytes).ok_or_else(|| {
            StoreError::internal(
                "reading the page-token key",
                std::io::Error::other(format!("the stored key is {} bytes, not 32", bytes.len())),
            )
        })
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        for collection in [&self.employees, &self.vehicles, &self.allocations] {
            let any = collection
                .find_one(Document::new())
                .await
                .map_err(classify("checking for data"))?;
            if any.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Drops the collections and recreates their indexes: a transaction
    /// could not hold the deletion of a million documents.
    async fn reset(&self) -> StoreResult<()> {
        // No writes between the drop and the new indexes: the indexes are
        // the booking rules.
        self.indexes
            .ready
            .store(false, std::sync::atomic::Ordering::Release);
        // The event sequence counter (in settings) stays: sequences never
        // go back, so watchers' resume tokens stay valid.
        for collection in [
            &self.events,
            &self.keys,
            &self.blocks,
            &self.allocations,
            &self.vehicles,
            &self.drivers,
            &self.employees,
        ] {
            collection
                .drop()
                .await
                .map_err(classify("dropping a collection"))?;
        }
        self.create_indexes()
            .await
            .map_err(|e| StoreError::unavailable("recreating indexes", e))?;
        self.reset_watermark().await?;
        self.indexes
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// One transaction, so that a failure leaves no partial fleet behind.
    async fn insert_fleet(
        &self,
        employees: Vec<Employee>,
        vehicles: Vec<Vehicle>,
    ) -> StoreResult<()> {
        self.writable()?;
        let mut vehicle_documents = Vec::with_capacity(vehicles.len());
        for v in &vehicles {
            vehicle_documents.push(d::vehicle_document(v, &seeded_timeline(v)?));
        }
        let batches: Vec<(Collection<Document>, Vec<Document>)> = vec![
            (
                self.employees.clone(),
                employees.iter().map(d::employee_document).collect(),
            ),
            (
                self.drivers.clone(),
                vehicles
                    .iter()
                    .filter_map(|v| v.driver.as_ref().map(d::driver_document))
                    .collect(),
            ),
            (self.vehicles.clone(), vehicle_documents),
        ];
        let events = seeded_fleet(&employees, &vehicles, &Origin::system("seed"));
        super::transaction::run(self, "seed", (batches, events), |tx, (batches, events)| {
            Box::pin(async move {
                for (collection, documents) in batches.iter() {
                    if !documents.is_empty() {
                        collection
                            .insert_many(documents.iter())
                            .session(&mut *tx.session)
                            .await?;
                    }
                }
                tx.events.extend_from_slice(events);
                Ok(())
            })
        })
        .await
        .map_err(|error| {
            raised_in_transaction(&error)
                .unwrap_or_else(|| errors::classify("inserting the fleet", error))
        })
    }

    /// One `insert_many` in a transaction: a batch that breaks a rule is
    /// refused whole. Ordered, because inside a transaction the server stops
    /// at the first error anyway, and an unordered insert of several batches
    /// would go on sending into the aborted transaction (and be retried as
    /// transient until the driver gives up).
    async fn insert_allocations(&self, allocations: Vec<Allocation>) -> StoreResult<()> {
        self.writable()?;
        if allocations.is_empty() {
            return Ok(());
        }
        let documents: Vec<Document> = allocations.iter().map(d::allocation_document).collect();
        let events = seeded_bookings(&allocations, &Origin::system("seed"));
        let result = super::transaction::run(
            self,
            "seed",
            (documents, events),
            |tx, (documents, events)| {
                Box::pin(async move {
                    tx.store
                        .allocations
                        .insert_many(documents.iter())
                        .session(&mut *tx.session)
                        .await?;
                    tx.events.extend_from_slice(events);
                    Ok(())
                })
            },
        )
        .await;
        let error = match result {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if let Some(raised) = raised_in_transaction(&error) {
            return Err(raised);
        }
        match errors::duplicate_key_position(&error) {
            Some(position) if position < allocations.len() => Err(self
                .conflict(error, &allocations[position], &allocations[..position])
                .await),
            _ => Err(errors::classify("inserting allocations", error)),
        }
    }
}
