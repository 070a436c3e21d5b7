import { Router } from "express";
import type { Call } from "../shared/schema";

export const routes = Router();
const calls = new Map<string, Call>();

routes.get("/api/calls/:id", (req, res) => {
  const call = calls.get(req.params.id);
  call ? res.json(call) : res.sendStatus(404);
});
