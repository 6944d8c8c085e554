DROP INDEX "records_action";--> statement-breakpoint
ALTER TABLE "records" ADD COLUMN "kind" text DEFAULT 'decision' NOT NULL;--> statement-breakpoint
ALTER TABLE "records" ADD COLUMN "ref" text;--> statement-breakpoint
CREATE UNIQUE INDEX "records_action_kind" ON "records" USING btree ("action_id","kind");--> statement-breakpoint
CREATE INDEX "records_ref" ON "records" USING btree ("ref");