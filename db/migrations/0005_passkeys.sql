CREATE TABLE `passkey_credentials` (
	`credential_id` text PRIMARY KEY NOT NULL,
	`team` text NOT NULL,
	`user` text NOT NULL,
	`public_key_cose` text NOT NULL,
	`public_key_jwk` text NOT NULL,
	`counter` integer DEFAULT 0 NOT NULL,
	`label` text NOT NULL,
	`transports_json` text DEFAULT '[]' NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `passkey_credentials_user` ON `passkey_credentials` (`team`,`user`);--> statement-breakpoint
CREATE TABLE `passkey_links` (
	`token_hash` text PRIMARY KEY NOT NULL,
	`purpose` text NOT NULL,
	`team` text NOT NULL,
	`user` text NOT NULL,
	`action_id` text,
	`level` integer,
	`action_sha256` text,
	`revision` integer,
	`comment` text,
	`nonce` text NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`used_at` integer
);
--> statement-breakpoint
CREATE INDEX `passkey_links_expires` ON `passkey_links` (`expires_at`);--> statement-breakpoint
PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_records` (
	`seq` integer PRIMARY KEY NOT NULL,
	`action_id` text,
	`decision_id` text NOT NULL,
	`jws` text NOT NULL,
	`digest` text NOT NULL,
	`kid` text NOT NULL,
	`agent_id` text,
	`region` text,
	`verdict` text,
	`decided_at` integer NOT NULL,
	`kind` text DEFAULT 'decision' NOT NULL,
	`ref` text,
	FOREIGN KEY (`action_id`) REFERENCES `actions`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
INSERT INTO `__new_records`("seq", "action_id", "decision_id", "jws", "digest", "kid", "agent_id", "region", "verdict", "decided_at", "kind", "ref") SELECT "seq", "action_id", "decision_id", "jws", "digest", "kid", "agent_id", "region", "verdict", "decided_at", "kind", "ref" FROM `records`;--> statement-breakpoint
DROP TABLE `records`;--> statement-breakpoint
ALTER TABLE `__new_records` RENAME TO `records`;--> statement-breakpoint
PRAGMA foreign_keys=ON;--> statement-breakpoint
CREATE UNIQUE INDEX `records_action_kind` ON `records` (`action_id`,`kind`);--> statement-breakpoint
CREATE INDEX `records_ref` ON `records` (`ref`);--> statement-breakpoint
CREATE UNIQUE INDEX `records_decision` ON `records` (`decision_id`);--> statement-breakpoint
CREATE INDEX `records_decided_at` ON `records` (`decided_at`);--> statement-breakpoint
ALTER TABLE `votes` ADD `step_up_json` text;