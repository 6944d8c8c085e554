CREATE TABLE `revisions` (
	`action_id` text NOT NULL,
	`revision` integer NOT NULL,
	`request_json` text NOT NULL,
	`request_sha256` text NOT NULL,
	`user` text NOT NULL,
	`team` text NOT NULL,
	`at` integer NOT NULL,
	`patch_json` text NOT NULL,
	`comment` text,
	PRIMARY KEY(`action_id`, `revision`),
	FOREIGN KEY (`action_id`) REFERENCES `actions`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
ALTER TABLE `actions` ADD `revision` integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE `votes` ADD `revision` integer;