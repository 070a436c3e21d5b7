import { join, leave } from "../../server/sessions";

test("join then leave", () => {
  join("alice", "call-1");
  leave("alice");
});
