CREATE TABLE "passkey_credentials" (
	"credential_id" text PRIMARY KEY NOT NULL,
	"team" text NOT NULL,
	"user" text NOT NULL,
	"public_key_cose" text NOT NULL,
	"public_key_jwk" text NOT NULL,
	"counter" bigint DEFAULT 0 NOT NULL,
	"label" text NOT NULL,
	"transports_json" text DEFAULT '[]' NOT NULL,
	"created_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "passkey_links" (
	"token_hash" text PRIMARY KEY NOT NULL,
	"purpose" text NOT NULL,
	"team" text NOT NULL,
	"user" text NOT NULL,
	"action_id" text,
	"level" integer,
	"action_sha256" text,
	"revision" integer,
	"comment" text,
	"nonce" text NOT NULL,
	"created_at" bigint NOT NULL,
	"expires_at" bigint NOT NULL,
	"used_at" bigint
);
--> statement-breakpoint
ALTER TABLE "records" ALTER COLUMN "action_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "records" ALTER COLUMN "agent_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "records" ALTER COLUMN "region" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "records" ALTER COLUMN "verdict" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "votes" ADD COLUMN "step_up_json" text;--> statement-breakpoint
CREATE INDEX "passkey_credentials_user" ON "passkey_credentials" USING btree ("team","user");--> statement-breakpoint
CREATE INDEX "passkey_links_expires" ON "passkey_links" USING btree ("expires_at");