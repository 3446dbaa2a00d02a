"""Drives a frame parser's ``payload`` stream (byte and index, valid without ready) in Amaranth's
simulator: shared by the request handler's tests and its parts' tests."""


async def send_payload(ctx, stream, payload: bytes, gap: int = 0) -> None:
    """Each byte of ``payload`` for one cycle with its index, then ``gap`` idle cycles."""
    for index, byte in enumerate(payload):
        ctx.set(stream.valid, 1)
        ctx.set(stream.payload.byte, byte)
        ctx.set(stream.payload.index, index)
        await ctx.tick()
        ctx.set(stream.valid, 0)
        if gap:
            await ctx.tick().repeat(gap)
