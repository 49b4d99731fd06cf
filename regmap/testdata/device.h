/* SPDX-License-Identifier: MIT */
/* The simulated device of examples/device, as a driver header would
 * describe it. */
#ifndef EXAMPLE_DEVICE_H
#define EXAMPLE_DEVICE_H

#include <linux/bits.h>

#define EXDEV_NUM_QUEUES	4	/* a count, not a register */
#define EXDEV_TIMEOUT_MS	100

#define EXDEV_ID		0x0000	/* reads "MMIO" */
#define EXDEV_CTRL		0x0004
#define   EXDEV_CTRL_EN		BIT(0)
#define   EXDEV_CTRL_MODE	GENMASK(2, 1)
#define     EXDEV_CTRL_MODE_OFF		(0 << 1)
#define     EXDEV_CTRL_MODE_SLOW	(1 << 1)
#define     EXDEV_CTRL_MODE_FAST	(2 << 1)
#define EXDEV_DATA		0x0008
#define EXDEV_DOORBELL		0x000c
#define   RING			BIT(0)	/* no prefix: the block's register */
#define EXDEV_STATUS		0x0010
#define   EXDEV_STATUS_DONE	(1u << 0)
#define   EXDEV_STATUS_ERR	BIT(7)
#define EXDEV_STATUS_COUNT_SHIFT	8
#define EXDEV_STATUS_COUNT_MASK		0xff
#define EXDEV_RESULT		0x0014

#define EXDEV_INT_STATUS	0x0018
#define EXDEV_INT_MASK		0x001c	/* a register, though it ends in _MASK */

#define EXDEV_QUEUE(n)		(0x100 + (n) * 0x10)
#define EXDEV_QUEUE_IDX(n)	((n) + 1)	/* not offsets */

#endif
