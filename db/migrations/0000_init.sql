CREATE TABLE `actions` (
	`id` text PRIMARY KEY NOT NULL,
	`agent_id` text NOT NULL,
	`request_id` text NOT NULL,
	`request_json` text NOT NULL,
	`request_sha256` text NOT NULL,
	`action_type` text NOT NULL,
	`risk_class` text NOT NULL,
	`region` text NOT NULL,
	`status` text NOT NULL,
	`route_name` text,
	`level` integer DEFAULT 0 NOT NULL,
	`quorum` integer DEFAULT 0 NOT NULL,
	`eligible_json` text,
	`deadline_at` integer,
	`cap_at` integer,
	`policy_sha256` text NOT NULL,
	`requested_at` integer NOT NULL,
	`verdict` text,
	`reason_code` text,
	`decided_at` integer,
	`record_seq` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `actions_agent_request` ON `actions` (`agent_id`,`request_id`);--> statement-breakpoint
CREATE INDEX `actions_status_deadline` ON `actions` (`status`,`deadline_at`);--> statement-breakpoint
CREATE INDEX `actions_agent_status` ON `actions` (`agent_id`,`status`);--> statement-breakpoint
CREATE TABLE `cards` (
	`action_id` text NOT NULL,
	`level` integer NOT NULL,
	`channel` text NOT NULL,
	`ts` text NOT NULL,
	`posted_at` integer NOT NULL,
	PRIMARY KEY(`action_id`, `level`),
	FOREIGN KEY (`action_id`) REFERENCES `actions`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `cards_message` ON `cards` (`channel`,`ts`);--> statement-breakpoint
CREATE TABLE `events` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`action_id` text,
	`agent_id` text,
	`type` text NOT NULL,
	`actor` text NOT NULL,
	`at` integer NOT NULL,
	`data_json` text DEFAULT '{}' NOT NULL
);
--> statement-breakpoint
CREATE INDEX `events_action` ON `events` (`action_id`,`id`);--> statement-breakpoint
CREATE TABLE `intake_jobs` (
	`job_key` text PRIMARY KEY NOT NULL,
	`job_id` text NOT NULL,
	`action_id` text NOT NULL,
	`released_at` integer,
	FOREIGN KEY (`action_id`) REFERENCES `actions`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `intake_jobs_action` ON `intake_jobs` (`action_id`);--> statement-breakpoint
CREATE TABLE `outbox` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`action_id` text,
	`kind` text NOT NULL,
	`dedupe_key` text NOT NULL,
	`payload_json` text DEFAULT '{}' NOT NULL,
	`state` text DEFAULT 'pending' NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`due_at` integer NOT NULL,
	`lease_until` integer,
	`last_error` text,
	`created_at` integer NOT NULL,
	`done_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `outbox_dedupe` ON `outbox` (`dedupe_key`);--> statement-breakpoint
CREATE INDEX `outbox_due` ON `outbox` (`state`,`due_at`) WHERE state = 'pending';--> statement-breakpoint
CREATE TABLE `proof_jtis` (
	`agent_id` text NOT NULL,
	`jti` text NOT NULL,
	`exp` integer NOT NULL,
	PRIMARY KEY(`agent_id`, `jti`)
);
--> statement-breakpoint
CREATE INDEX `proof_jtis_exp` ON `proof_jtis` (`exp`);--> statement-breakpoint
CREATE TABLE `records` (
	`seq` integer PRIMARY KEY NOT NULL,
	`action_id` text NOT NULL,
	`decision_id` text NOT NULL,
	`jws` text NOT NULL,
	`digest` text NOT NULL,
	`kid` text NOT NULL,
	`agent_id` text NOT NULL,
	`region` text NOT NULL,
	`verdict` text NOT NULL,
	`decided_at` integer NOT NULL,
	FOREIGN KEY (`action_id`) REFERENCES `actions`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `records_action` ON `records` (`action_id`);--> statement-breakpoint
CREATE UNIQUE INDEX `records_decision` ON `records` (`decision_id`);--> statement-breakpoint
CREATE INDEX `records_decided_at` ON `records` (`decided_at`);--> statement-breakpoint
CREATE TABLE `signing_keys` (
	`kid` text PRIMARY KEY NOT NULL,
	`public_jwk` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `votes` (
	`action_id` text NOT NULL,
	`user` text NOT NULL,
	`team` text NOT NULL,
	`email` text,
	`real_name` text,
	`vote` text NOT NULL,
	`comment` text,
	`level` integer NOT NULL,
	`at` integer NOT NULL,
	PRIMARY KEY(`action_id`, `user`),
	FOREIGN KEY (`action_id`) REFERENCES `actions`(`id`) ON UPDATE no action ON DELETE no action
);
