-- Free-text search by part of a business name (SQLite): a trigram index (FTS5) over the names
-- of every practice, its rowid the practice's rowid, kept in step by triggers. The search
-- takes its candidates from it and checks each against the practice itself, so the index
-- may match more (any case, any holder) but never decides alone. A migration that rebuilds
-- the practices table must rebuild this index and its triggers too.
CREATE VIRTUAL TABLE practice_names USING fts5(name, tokenize = 'trigram', detail = 'none');
INSERT INTO practice_names (rowid, name) SELECT rowid, business_name FROM practices WHERE business_name IS NOT NULL;
CREATE TRIGGER practice_names_insert AFTER INSERT ON practices WHEN new.business_name IS NOT NULL BEGIN
    INSERT INTO practice_names (rowid, name) VALUES (new.rowid, new.business_name);
END;
CREATE TRIGGER practice_names_update AFTER UPDATE OF data ON practices BEGIN
    DELETE FROM practice_names WHERE rowid = old.rowid;
    INSERT INTO practice_names (rowid, name) SELECT new.rowid, new.business_name WHERE new.business_name IS NOT NULL;
END;
CREATE TRIGGER practice_names_delete AFTER DELETE ON practices BEGIN
    DELETE FROM practice_names WHERE rowid = old.rowid;
END;
