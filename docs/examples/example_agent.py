"""An agent for sample_sprints/pair, written with sprintdeck's client library.

    python docs/examples/example_agent.py --connect unix:/tmp/pair.sock --id backend --token-file F

The backend writes the greeting library; the frontend asks the backend how to call it, then
writes the command line.  Both note their change in CHANGES.md, a file the plan gives to no task.
"""

from engine.agents.client import Agent, AssistanceRequest, Task, TaskFailed, TaskResult

LIBRARY = '''def greet(name):
    return f"Hello, {name}!"


def farewell(name):
    return f"Goodbye, {name}!"
'''

COMMAND = '''import sys

from greet import greet

# {usage}
print(greet(sys.argv[1] if len(sys.argv) > 1 else "world"))
'''


class PairAgent(Agent):
    async def execute_task(self, task: Task) -> TaskResult:
        if task.id == "library":
            path, text = "src/greet.py", LIBRARY
        elif task.id == "command":
            # Ask the backend (an agent id, or leave `to` out and the manager finds a helper).
            answer = await self.request_assistance("greet", "How do I call the greeting library?",
                                                 task=task, to="backend", timeout=10)
            usage = answer.details if answer.answered else "greet(name) returns the greeting"
            path, text = "src/cli.py", COMMAND.format(usage=usage)
        else:
            raise TaskFailed(f"{self.agent_id} does not know how to do {task.id}", retryable=False)

        await self.report_progress(task, 0.2, f"writing {path}")
        own = task.lock(path)  # the manager took the plan's locks for the task before assigning it
        if not own:
            raise TaskFailed(f"no write lock on {path}")
        (self.workspace / path).parent.mkdir(parents=True, exist_ok=True)
        (self.workspace / path).write_text(text)
        await self.report_file(path, own, task)  # the new checksum, fenced by the lock's token

        # A file the plan did not name: ask for it now, wait while the other agent holds it.
        async with self.lock("CHANGES.md", "write", task=task, wait=10) as notes:
            with open(self.workspace / "CHANGES.md", "a") as changes:
                changes.write(f"- {task.id}: {path} by {self.agent_id}\n")
            await self.report_file("CHANGES.md", notes, task)

        await self.report_progress(task, 1.0, "done")
        return TaskResult(result={"files": [path, "CHANGES.md"]})

    async def provide_assistance(self, request: AssistanceRequest) -> str | None:
        if request.topic == "greet":
            return "greet(name: str) -> str, from src/greet.py"
        return None  # someone else may know


if __name__ == "__main__":
    raise SystemExit(PairAgent.main())
