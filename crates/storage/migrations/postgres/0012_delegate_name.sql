-- The collaborator's name as the grantor gave it, shown beside the codice fiscale (PostgreSQL).
-- Delegations granted before it have none: the pages show the code alone.
ALTER TABLE delegations ADD COLUMN delegate_name TEXT NOT NULL DEFAULT '';
