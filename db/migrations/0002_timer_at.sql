-- The pending action's next timer (the earlier of deadline_at and cap_at), indexed so the
-- timer sweep reads only what is due. A generated column: the database keeps it on every
-- write, and existing rows need no backfill UPDATE.
-- Virtual: SQLite computes it when read, and CREATE INDEX computes it for every existing row.
ALTER TABLE `actions` ADD `timer_at` integer GENERATED ALWAYS AS (CASE WHEN status = 'pending' THEN min(coalesce(deadline_at, cap_at), coalesce(cap_at, deadline_at)) END) VIRTUAL;--> statement-breakpoint
CREATE INDEX `actions_timer` ON `actions` (`timer_at`,`id`);