-- document_proposals.proposer_user_id references users ON DELETE SET NULL: without an index,
-- deleting a user scans every proposal to find the ones to update.
CREATE INDEX document_proposals_proposer_user_id_idx ON document_proposals (proposer_user_id);
