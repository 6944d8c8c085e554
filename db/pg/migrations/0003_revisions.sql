CREATE TABLE "revisions" (
	"action_id" text NOT NULL,
	"revision" integer NOT NULL,
	"request_json" text NOT NULL,
	"request_sha256" text NOT NULL,
	"user" text NOT NULL,
	"team" text NOT NULL,
	"at" bigint NOT NULL,
	"patch_json" text NOT NULL,
	"comment" text,
	CONSTRAINT "revisions_action_id_revision_pk" PRIMARY KEY("action_id","revision")
);
--> statement-breakpoint
ALTER TABLE "actions" ADD COLUMN "revision" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "votes" ADD COLUMN "revision" integer;--> statement-breakpoint
ALTER TABLE "revisions" ADD CONSTRAINT "revisions_action_id_actions_id_fk" FOREIGN KEY ("action_id") REFERENCES "actions"("id") ON DELETE no action ON UPDATE no action;