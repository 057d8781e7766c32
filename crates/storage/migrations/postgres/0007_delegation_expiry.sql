-- Whether the expiry of a delegation has been written to the audit trail (once).
ALTER TABLE delegations ADD COLUMN expiry_recorded INTEGER NOT NULL DEFAULT 0;
