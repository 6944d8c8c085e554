-- The pending action's next timer (the earlier of deadline_at and cap_at), indexed so the
-- timer sweep reads only what is due. A generated column: the database keeps it on every
-- write, and existing rows need no backfill UPDATE.
-- Stored: ADD COLUMN computes it for every existing row.
ALTER TABLE "actions" ADD COLUMN "timer_at" bigint GENERATED ALWAYS AS (CASE WHEN status = 'pending' THEN least(deadline_at, cap_at) END) STORED;--> statement-breakpoint
CREATE INDEX "actions_timer" ON "actions" USING btree ("timer_at","id");