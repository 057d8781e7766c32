-- The office of the institution a filing goes to, when the institution routes by territory.
ALTER TABLE deliveries ADD COLUMN office TEXT;
