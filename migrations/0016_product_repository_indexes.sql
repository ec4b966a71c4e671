-- application_documents.repository_id and work_items.repository_id reference source_repositories
-- ON DELETE SET NULL: without an index, deleting a repository scans both tables.
CREATE INDEX application_documents_repository_id_idx ON application_documents (repository_id);
CREATE INDEX work_items_repository_id_idx ON work_items (repository_id);
