DROP INDEX `records_action`;--> statement-breakpoint
ALTER TABLE `records` ADD `kind` text DEFAULT 'decision' NOT NULL;--> statement-breakpoint
ALTER TABLE `records` ADD `ref` text;--> statement-breakpoint
CREATE UNIQUE INDEX `records_action_kind` ON `records` (`action_id`,`kind`);--> statement-breakpoint
CREATE INDEX `records_ref` ON `records` (`ref`);